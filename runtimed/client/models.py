"""The plain objects the bindings return: cells, outputs, execution results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Output:
    output_type: str
    name: str | None = None
    text: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    execution_count: int | None = None
    display_id: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Output:
        return cls(
            output_type=d["output_type"], name=d.get("name"), text=d.get("text"), data=d.get("data") or {},
            metadata=d.get("metadata") or {}, ename=d.get("ename"), evalue=d.get("evalue"),
            traceback=list(d.get("traceback") or []), execution_count=d.get("execution_count"),
            display_id=d.get("display_id"),
        )


@dataclass
class Cell:
    id: str
    cell_type: str
    source: str
    execution_count: int | None = None
    outputs: list[Output] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        preview = self.source if len(self.source) <= 40 else self.source[:37] + "..."
        return f"Cell(id={self.id!r}, cell_type={self.cell_type!r}, source={preview!r}, outputs={len(self.outputs)})"


@dataclass
class ExecutionResult:
    cell_id: str
    outputs: list[Output]
    success: bool
    execution_count: int | None = None
    status: str = "success"

    @property
    def stdout(self) -> str:
        return "".join(o.text or "" for o in self.outputs if o.output_type == "stream" and o.name == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(o.text or "" for o in self.outputs if o.output_type == "stream" and o.name == "stderr")

    @property
    def display_data(self) -> list[Output]:
        return [o for o in self.outputs if o.output_type in ("display_data", "execute_result")]

    @property
    def error(self) -> Output | None:
        return next((o for o in self.outputs if o.output_type == "error"), None)

    def __repr__(self) -> str:
        return (f"ExecutionResult(cell_id={self.cell_id!r}, success={self.success}, "
                f"execution_count={self.execution_count}, outputs={len(self.outputs)})")
