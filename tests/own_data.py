"""A user's own table, generated: customers with a signup date over a few months, a yes/no
label, numeric and text columns (some nulls) — not flights, so contract init and the stacks meet
a shape they were not written around."""

from __future__ import annotations

import numpy as np
import pandas as pd


def customers(n: int = 2000, months: int = 3, seed: int = 0) -> pd.DataFrame:
    """``n`` customers signed up over ``months`` months from 2024-01; ``churned`` is "yes"/"no"
    and depends on the plan, tenure, spend and logins (a model can learn it)."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 30 * months, n)
    plan = rng.choice(["free", "basic", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    spend = np.round(rng.gamma(2.0, 20.0, n), 2)
    tenure = rng.integers(1, 60, n)
    logins = rng.poisson(5, n).astype(float)
    logins[rng.random(n) < 0.03] = np.nan
    z = (0.5 + 1.2 * (plan == "free") - 0.05 * tenure + 0.01 * spend
         - 0.15 * np.nan_to_num(logins, nan=5.0))
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-z)), "yes", "no")
    signup = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "signup_date": signup.strftime("%Y-%m-%d"),
        "plan": plan, "region": region, "spend": spend, "tenure_months": tenure,
        "logins": logins, "churned": churned,
    })


def with_year_month(df: pd.DataFrame) -> pd.DataFrame:
    """The same table with year and month columns instead of the date."""
    d = pd.to_datetime(df["signup_date"])
    return df.drop(columns=["signup_date"]).assign(year=d.dt.year, month=d.dt.month)
