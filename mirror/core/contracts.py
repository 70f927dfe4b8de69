"""A model's interface contract: its signatures, each with the inputs it takes and the
outputs it gives (name, dtype, shape). Serving code is written against it, so a new
version that changes it breaks that code (mirror.core.contract_changes says how). Each
model format reads it from its files without TensorFlow (hub_cache.formats); an
operator pins one as a JSON file (`[hub] models` `contract`), the same JSON written by
`tfmirror hub contract --write`, so it lives here where the config reads it too."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.core.errors import TfmirrorError

CONTRACT_VERSION = 1  # of the JSON document below
MAX_CONTRACT_FILE = 4 * 2**20  # a pinned file: a few KB for real models

# A shape: one entry per dimension, None where it is unknown (any size); None as a
# whole where even the rank is unknown.
Shape = tuple[int | None, ...] | None


class ContractInvalid(TfmirrorError, ValueError):
    """A contract document that cannot be read; the message says where and why."""


@dataclass(frozen=True)
class TensorSpec:
    name: str  # the key serving code feeds or reads it by
    dtype: str  # TensorFlow's name for it ("float32", "uint8", "string")
    shape: Shape
    optional: bool = False  # an input the model has a default for (SignatureDef.defaults)

    def as_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": None if self.shape is None else list(self.shape),
        }
        if self.optional:
            doc["optional"] = True
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str) -> TensorSpec:
        if not isinstance(doc, Mapping):
            raise ContractInvalid(f"{where}: not an object with name, dtype and shape")
        name, dtype, shape = doc.get("name"), doc.get("dtype"), doc.get("shape")
        if not isinstance(name, str) or not name:
            raise ContractInvalid(f"{where}: its name is not a string")
        if not isinstance(dtype, str) or not dtype:
            raise ContractInvalid(f"{where} {name!r}: its dtype is not a string like float32")
        if "shape" not in doc:
            raise ContractInvalid(f"{where} {name!r}: no shape (null for an unknown rank)")
        optional = doc.get("optional", False)
        if not isinstance(optional, bool):
            raise ContractInvalid(f"{where} {name!r}: optional must be true or false")
        return cls(name, dtype, _shape(shape, f"{where} {name!r}"), optional)

    def shown(self) -> str:
        """`float32[?,224,224,3]`, as messages and pages say it."""
        if self.shape is None:
            return f"{self.dtype}[unknown rank]"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def _shape(raw: object, where: str) -> Shape:
    if raw is None:
        return None
    ok = isinstance(raw, list) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in raw
    )
    if not ok:
        raise ContractInvalid(f"{where}: shape must be a list of sizes, null where unknown")
    assert isinstance(raw, list)
    return tuple(raw)


@dataclass(frozen=True)
class Signature:
    name: str  # "serving_default"
    inputs: tuple[TensorSpec, ...]  # sorted by name
    outputs: tuple[TensorSpec, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "inputs": [s.as_json() for s in self.inputs],
            "outputs": [s.as_json() for s in self.outputs],
        }

    @classmethod
    def make(cls, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Signature:
        return cls(name, _sorted(inputs), _sorted(outputs))

    @classmethod
    def from_json(cls, name: str, doc: object, where: str) -> Signature:
        if not isinstance(doc, Mapping):
            raise ContractInvalid(f"{where}: signature {name!r} is not an object")
        sides = []
        for side in ("inputs", "outputs"):
            specs = doc.get(side, [])
            if not isinstance(specs, list):
                raise ContractInvalid(f"{where}: signature {name!r} {side} is not a list")
            at = f"{where}: signature {name!r} {side[:-1]}"
            sides.append([TensorSpec.from_json(s, at) for s in specs])
        for side, specs in zip(("input", "output"), sides, strict=True):
            names = [s.name for s in specs]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise ContractInvalid(f"{where}: signature {name!r} names {side} {dup!r} twice")
        return cls.make(name, sides[0], sides[1])


def _sorted(specs: list[TensorSpec]) -> tuple[TensorSpec, ...]:
    return tuple(sorted(specs, key=lambda s: s.name))


@dataclass(frozen=True)
class Contract:
    """Every signature of one model, by name."""

    signatures: tuple[Signature, ...]  # sorted by name
    read_from: str = ""  # what it was read from ("saved_model.pb"), as pages say it

    @classmethod
    def of(cls, signatures: list[Signature], read_from: str = "") -> Contract:
        return cls(tuple(sorted(signatures, key=lambda s: s.name)), read_from)

    def signature(self, name: str) -> Signature | None:
        return next((s for s in self.signatures if s.name == name), None)

    def as_json(self) -> dict[str, object]:
        return {
            "contract_version": CONTRACT_VERSION,
            "read_from": self.read_from,
            "signatures": {s.name: s.as_json() for s in self.signatures},
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.as_json(), indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, doc: object, where: str = "contract") -> Contract:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("signatures"), Mapping):
            raise ContractInvalid(f"{where}: not a contract (no signatures object)")
        version = doc.get("contract_version", CONTRACT_VERSION)
        if version != CONTRACT_VERSION:
            raise ContractInvalid(
                f"{where}: contract_version {version!r}; this release reads {CONTRACT_VERSION}"
            )
        signatures = doc["signatures"]
        assert isinstance(signatures, Mapping)
        read_from = doc.get("read_from", "")
        return cls.of(
            [Signature.from_json(str(n), s, where) for n, s in signatures.items()],
            read_from if isinstance(read_from, str) else "",
        )

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "contract") -> Contract:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ContractInvalid(f"{where}: not JSON ({str(exc)[:120]})") from None
        return cls.from_json(doc, where)


def read_contract_file(path: Path) -> Contract:
    """A pinned contract file, bounded (it is read at config load)."""
    try:
        if path.stat().st_size > MAX_CONTRACT_FILE:
            raise ContractInvalid(f"{path}: over {MAX_CONTRACT_FILE // 2**20} MiB, not a contract")
        data = path.read_bytes()
    except OSError as exc:
        raise ContractInvalid(f"{path}: {exc.strerror or exc}") from None
    return Contract.from_bytes(data, str(path))
