"""The claims section derives each verdict from measured figures only."""

from comparison import claims


def _run(tfx_s, torch_s, tfx_sps, torch_sps):
    def stack(total, sps):
        return {"run": {"total_wall_s": total, "stages": {"train": {"samples_per_s": sps,
                                                                     "workers": 1}}}}
    return {"runs": [{"stacks": {"tfx": stack(tfx_s, tfx_sps), "torch": stack(torch_s, torch_sps)}}]}


def _claim(doc, key):
    return next(c for c in doc["claims"] if c["key"] == key)


def test_speed_claim_follows_the_numbers():
    close = claims.collect([], _run(100.0, 90.0, 1000.0, 1100.0))
    far = claims.collect([], _run(300.0, 50.0, 1000.0, 9000.0))
    assert _claim(close, "speed")["verdict"] == "supported"
    assert _claim(far, "speed")["verdict"] == "contradicted"
    # the sentences carry the measured numbers, and say where they come from
    ev = _claim(far, "speed")["evidence"][0]
    assert "300.0 s" in ev["text"] and ev["section"] == "stages" and ev["numbers"]["ratio"] == 6.0


def test_a_claim_without_measurements_says_so():
    doc = claims.collect([], {"runs": []})
    assert {c["verdict"] for c in doc["claims"]} == {"not measured here"}
    assert "not measured here" in claims.render(doc)


def test_verdict_rules():
    assert claims.verdict("tfx", ["tfx", "tfx"]) == "supported"
    assert claims.verdict("tfx", ["torch", "matched"]) == "contradicted"
    assert claims.verdict("torch", ["matched", "neither"]) == "not supported (matched)"
    assert claims.verdict("tfx", ["tfx", "torch"]) == "mixed"
    assert claims.verdict("matched", ["matched"]) == "supported"
    assert claims.verdict("torch", []) == "not measured here"


def test_a_figure_leans_by_its_ratio_and_a_missing_one_by_what_the_other_did():
    assert claims._lean({"tfx": 10.0, "torch": 12.0}, higher_is_better=False)[0] == "matched"
    assert claims._lean({"tfx": 10.0, "torch": 12.0}, False, within=1.1) == ("tfx", 1.2)
    assert claims._lean({"tfx": 10.0, "torch": 30.0}, higher_is_better=True) == ("torch", 3.0)
    # one stack served nothing: the other leans, where more is better
    assert claims._lean({"tfx": 0.0, "torch": 50.0}, higher_is_better=True)[0] == "torch"
    # a time that was not measured (0) compares with nothing
    assert claims._lean({"tfx": 0.0, "torch": 5.0}, higher_is_better=False) == ("neither", 1.0)
