"""Offline validation of custom resources against the real upstream CRDs.

The CRDs under ``shared/reference/crds/`` (Volcano, Kubeflow Trainer v2, KServe; copied unchanged,
see its README) carry each version's ``openAPIV3Schema``. :func:`validate` checks a manifest
against the one for its ``apiVersion``/``kind`` with jsonschema, strictly: where a schema lists
``properties`` and does not say ``x-kubernetes-preserve-unknown-fields``, an unknown field is an
error. The API server would instead prune it silently (structural pruning), so a misspelt
``nodeSelector`` would run the job on the wrong nodes without a word; here it fails.

Also applied, as the API server does: ``x-kubernetes-int-or-string`` (integer or string),
``x-kubernetes-list-type: set`` (unique items) and ``map`` (unique ``x-kubernetes-list-map-keys``),
and a strict ``ObjectMeta`` for the top-level ``metadata``, which CRDs leave as a bare object.
Not evaluated: the CEL rules in ``x-kubernetes-validations`` (they need a CEL runtime).
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import yaml

from components.common.errors import ContractError

#: The CRD folder; ``TWINPIPE_CRDS`` overrides it (a fresh clone keeps it beside the repository).
DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "crds"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
#: The ObjectMeta fields a client may set (the server fills in the rest and ignores them on create).
_OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253,
                 "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63,
                      "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


class CrdError(ContractError):
    """A manifest does not match its CustomResourceDefinition."""


def crd_dir() -> Path:
    return Path(os.environ.get("TWINPIPE_CRDS") or DEFAULT_DIR)


@functools.cache
def _schemas(folder: str) -> dict[tuple[str, str], dict]:
    """``(apiVersion, kind) -> strict schema`` for every CRD version in ``folder``."""
    found = {}
    for f in sorted(Path(folder).glob("*.yaml")):
        # libyaml's loader: the KServe CRD alone is 2 MB of YAML.
        for doc in yaml.load_all(f.read_text(), Loader=yaml.CSafeLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schema.setdefault("properties", {})["metadata"] = _OBJECT_META
                found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    if not found:
        raise CrdError(f"No CustomResourceDefinitions under {folder}: the CRD schemas are read from "
                       "shared/reference/crds/ beside the repository (or set TWINPIPE_CRDS to that "
                       "folder), so that manifests can be validated without a cluster.")
    return found


def _strict(node: dict) -> dict:
    """The Kubernetes structural-schema extensions as plain JSON Schema, unknown fields refused."""
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "array" and node.get("x-kubernetes-list-type") == "set":
        node["uniqueItems"] = True
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node.setdefault("additionalProperties", False)
    for key in ("properties", "patternProperties"):
        for child in node.get(key, {}).values():
            _strict(child)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            _strict(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key, []):
            _strict(child)
    return node


def _list_map_keys(validator, keys, instance, schema) -> Iterator[jsonschema.ValidationError]:
    """``x-kubernetes-list-map-keys``: no two items share the key tuple (e.g. two env ``name``s)."""
    if schema.get("x-kubernetes-list-type") != "map" or not validator.is_type(instance, "array"):
        return
    seen = set()
    for item in instance:
        key = tuple(str(item.get(k)) for k in keys) if isinstance(item, dict) else (repr(item),)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entry for {dict(zip(keys, key, strict=False))}")
        seen.add(key)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys})


def kinds() -> list[tuple[str, str]]:
    """The ``(apiVersion, kind)`` pairs that can be validated."""
    return sorted(_schemas(str(crd_dir())))


def errors(manifest: dict) -> list[str]:
    """Every mismatch as ``<path>: <message>``; empty when the manifest is valid."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    schemas = _schemas(str(crd_dir()))
    if key not in schemas:
        known = ", ".join(f"{v} {k}" for v, k in sorted(schemas))
        return [f"$: no CRD for apiVersion {key[0]!r} kind {key[1]!r} (known: {known})"]
    found = _Validator(schemas[key]).iter_errors(manifest)
    return sorted(f"{e.json_path}: {_message(e)}" for e in found)


def _message(e: jsonschema.ValidationError) -> str:
    if e.validator == "additionalProperties" and e.validator_value is False:
        # jsonschema names the extras but not what is allowed: both help with a typo.
        allowed = ", ".join(sorted(e.schema.get("properties", {})))
        return f"{e.message} (allowed: {allowed})"
    return e.message


def validate(manifest: dict) -> None:
    """Raises :class:`CrdError` (one paragraph naming each path) unless ``manifest`` matches the
    ``openAPIV3Schema`` of its apiVersion/kind."""
    found = errors(manifest)
    if found:
        name = (manifest.get("metadata") or {}).get("name") or (manifest.get("metadata") or {}).get(
            "generateName", "?")
        shown = "; ".join(found[:8]) + (f"; and {len(found) - 8} more" if len(found) > 8 else "")
        raise CrdError(f"{manifest.get('kind')} {name!r} ({manifest.get('apiVersion')}) does not "
                       f"match its CRD schema: {shown}.")
