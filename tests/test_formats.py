"""ipynb and YAML notebooks: import into a real store, export from its projection, round trip equal."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import fsspec
import nbformat
import pytest
from nbformat import v4

from runtimed.errors import InvalidNotebookError
from runtimed.formats import (
    load_notebook,
    notebook_from_projection,
    notebook_to_events,
    read_ipynb,
    read_yaml_notebook,
    save_notebook,
    write_ipynb,
)
from runtimed.schema.events import make_event
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "importer", "kind": "human"}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle r="4"/></svg>'
ANSI_TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


@pytest.fixture
def store(tmp_path):
    s = SQLiteEventStore(tmp_path)
    yield s
    s.close()


def import_into(store, notebook_id: str, nb) -> None:
    """What an importer does: events in batches (the store caps a push at 5000 events)."""
    events = notebook_to_events(nb)
    log = store.log(notebook_id)
    for start in range(0, len(events), 2000):
        results = log.append(events[start : start + 2000], HUMAN)
        assert all("seq" in r for r in results), [r for r in results if "error" in r][:3]


def normal(nb) -> dict:
    """Plain JSON data for comparison (both sides come through nbformat, which joins multi-line strings)."""
    return json.loads(json.dumps(nb, sort_keys=True))


def round_trip(store, nb, notebook_id="nb"):
    original = read_ipynb(write_ipynb(nb))
    import_into(store, notebook_id, original)
    exported = store.log(notebook_id).view(notebook_from_projection)
    nbformat.validate(exported)
    assert normal(exported) == normal(original)
    return exported


# --- the corpus -----------------------------------------------------------------------------------


def rich_outputs():
    return v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python", "version": "3.11.4", "mimetype": "text/x-python"},
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "version_major": 2,
                    "version_minor": 0,
                    "state": {"abc123": {"model_name": "IntSliderModel", "state": {"value": 3, "max": None}}},
                }
            },
            "toc": {"number_sections": True},
        },
        cells=[
            v4.new_code_cell(
                "from IPython.display import *\ndisplay(Image(data))",
                id="image",
                execution_count=1,
                metadata={"tags": ["figure"], "jupyter": {"source_hidden": True}},
                outputs=[
                    v4.new_output(
                        "display_data",
                        data={"image/png": PNG, "text/plain": "<Image>"},
                        metadata={"image/png": {"width": 10, "height": 10}},
                    ),
                    v4.new_output("display_data", data={"image/svg+xml": SVG, "text/plain": "<SVG>"}),
                    v4.new_output("stream", name="stdout", text="line 1\nline 2\n"),
                    v4.new_output("stream", name="stderr", text="warning: careful\n"),
                ],
            ),
            v4.new_code_cell(
                "{'a': [1, 2, None]}",
                id="json",
                execution_count=2,
                outputs=[
                    v4.new_output(
                        "execute_result",
                        execution_count=2,
                        data={
                            "application/json": {"a": [1, 2, None]},
                            "text/plain": "{'a': [1, 2, None]}",
                            "application/vnd.custom+json": [1, "two"],
                        },
                    ),
                    v4.new_output(
                        "display_data",
                        data={"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "table"},
                    ),
                    v4.new_output(
                        "display_data",
                        data={
                            "application/vnd.jupyter.widget-view+json": {
                                "model_id": "abc123",
                                "version_major": 2,
                                "version_minor": 0,
                            },
                            "text/plain": "IntSlider(value=3)",
                        },
                    ),
                ],
            ),
            v4.new_code_cell(
                "1/0",
                id="boom",
                execution_count=3,
                outputs=[
                    v4.new_output(
                        "error",
                        ename="ZeroDivisionError",
                        evalue="division by zero",
                        traceback=ANSI_TRACEBACK,
                    )
                ],
            ),
            v4.new_code_cell("", id="empty-code"),
            v4.new_code_cell(
                "print('never run')", id="never_run", metadata={"collapsed": False, "scrolled": "auto"}
            ),
        ],
    )


def unicode_notebook():
    return v4.new_notebook(
        metadata={"title": "Ünïcödé ✓ 数据", "authors": [{"name": "Zoë 🦊"}]},
        cells=[
            v4.new_markdown_cell("# 日本語のノート 🎉\n\nمرحبا بالعالم — \u200d👩‍💻", id="intro"),
            v4.new_code_cell(
                "s = 'naïve café 🍵'\nprint(s)",
                id="u1",
                execution_count=1,
                outputs=[v4.new_output("stream", name="stdout", text="naïve café 🍵\n")],
            ),
            v4.new_raw_cell(
                "\\section{Ω}\r\nwindows line ending", id="raw-tex", metadata={"format": "text/latex"}
            ),
        ],
    )


def attachments_notebook():
    return v4.new_notebook(
        cells=[
            v4.new_markdown_cell(
                "![x](attachment:x.png)", id="md", attachments={"x.png": {"image/png": PNG}}
            ),
            v4.new_raw_cell("raw with attachment", id="raw", attachments={"y.svg": {"image/svg+xml": SVG}}),
            v4.new_markdown_cell("empty attachments", id="md2", attachments={}),
        ]
    )


def big_notebook(n=3000):
    # plain dicts: nbformat's per-cell constructors validate each cell, slowly
    cells = []
    for i in range(n):
        if i % 3 == 0:
            cells.append(
                {"id": f"m{i}", "cell_type": "markdown", "metadata": {}, "source": f"## Section {i}"}
            )
        else:
            output = {
                "output_type": "execute_result",
                "execution_count": i,
                "metadata": {},
                "data": {"text/plain": str(i)},
            }
            cells.append(
                {
                    "id": f"c{i}",
                    "cell_type": "code",
                    "metadata": {},
                    "source": f"x{i} = {i}\nx{i}",
                    "execution_count": i,
                    "outputs": [output],
                }
            )
    return nbformat.from_dict(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        }
    )


@pytest.mark.parametrize(
    "build",
    [rich_outputs, unicode_notebook, attachments_notebook, v4.new_notebook],
    ids=["rich", "unicode", "attachments", "empty"],
)
def test_round_trip(store, build):
    round_trip(store, build())


def test_round_trip_of_3000_cells(store):
    exported = round_trip(store, big_notebook())
    assert [c["id"] for c in exported.cells[:4]] == ["m0", "c1", "c2", "m3"]


def test_import_events_shape():
    nb = read_ipynb(write_ipynb(rich_outputs()))
    events = notebook_to_events(nb)
    assert events[0]["name"] == "notebookCreated"
    assert events[0]["args"]["title"] == "Untitled"
    assert events[0]["args"]["kernelspec"]["name"] == "python3"
    assert events[0]["args"]["language_info"]["name"] == "python"
    metadata_keys = {e["args"]["key"] for e in events if e["name"] == "notebookMetadataSet"}
    assert metadata_keys == {"widgets", "toc"}
    cells = [e["args"] for e in events if e["name"] == "cellCreated"]
    assert [c["cellId"] for c in cells] == ["image", "json", "boom", "empty-code", "never_run"]
    keys = [c["fractionalIndex"] for c in cells]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    outputs = [e["args"] for e in events if e["name"] == "outputAdded"]
    assert len(outputs) == 8 and all("queueId" not in o for o in outputs)
    assert len({o["outputId"] for o in outputs}) == 8
    assert outputs[4]["executionCount"] == 2
    assert notebook_to_events(unicode_notebook())[0]["args"]["title"] == "Ünïcödé ✓ 数据"
    assert notebook_to_events(v4.new_notebook(), title="Mine")[0]["args"]["title"] == "Mine"


def test_transient_display_id_is_imported(store):
    nb = v4.new_notebook(cells=[v4.new_code_cell("", id="c")])
    nb.cells[0].outputs = [
        nbformat.from_dict(
            {
                "output_type": "display_data",
                "data": {"text/plain": "0%"},
                "metadata": {},
                "transient": {"display_id": "bar"},
            }
        )
    ]
    events = notebook_to_events(nb)
    assert events[-1]["args"]["displayId"] == "bar"
    log = store.log("nb")
    log.append(events, HUMAN)
    log.append([make_event("displayUpdated", displayId="bar", data={"text/plain": "100%"})], HUMAN)
    exported = notebook_from_projection(log._conn)
    assert exported.cells[0].outputs[0] == {
        "output_type": "display_data",
        "data": {"text/plain": "100%"},
        "metadata": {},
    }


def test_old_notebooks_get_cell_ids(store):
    nb44 = {
        "nbformat": 4,
        "nbformat_minor": 2,
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "source": ["a = 1\n", "a"],
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            },
            {"cell_type": "markdown", "source": "x", "metadata": {}},
        ],
    }
    nb = read_ipynb(json.dumps(nb44))
    assert nb.nbformat_minor == 5 and all(c.id for c in nb.cells)
    assert nb.cells[0].source == "a = 1\na"
    assert "orig_nbformat_minor" not in nb.metadata
    round_trip(store, nb)


def test_v3_notebooks_are_upgraded():
    nb3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "input": "1+1",
                        "language": "python",
                        "outputs": [
                            {"output_type": "pyout", "prompt_number": 1, "text": "2", "metadata": {}}
                        ],
                        "prompt_number": 1,
                        "metadata": {},
                    },
                    {"cell_type": "heading", "level": 2, "source": "Title", "metadata": {}},
                ]
            }
        ],
    }
    nb = read_ipynb(json.dumps(nb3))
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["code", "markdown"]
    assert nb.cells[0].outputs[0].data == {"text/plain": "2"}
    assert notebook_to_events(nb)


def test_ids_outside_our_charset_survive_a_round_trip(store):
    nb = v4.new_notebook(
        cells=[
            v4.new_code_cell("a", id="_private"),
            v4.new_code_cell("b", id="-dash"),
            v4.new_code_cell("c", id="x" * 64),
        ]
    )
    exported = round_trip(store, nb)
    assert [c.id for c in exported.cells] == ["_private", "-dash", "x" * 64]


def test_our_ids_map_to_valid_unique_nbformat_ids(store):
    log = store.log("nb")
    ids = ["a.b", "a:b", "a-b", "a_b", "y" * 100, "y" * 100 + "z", "nb:c", "c"]
    events = [make_event("notebookCreated", title="T")]
    events += [
        make_event("cellCreated", cellId=cid, cellType="code", fractionalIndex=f"a{i}")
        for i, cid in enumerate(ids)
    ]
    log.append(events, HUMAN)
    first = [c.id for c in notebook_from_projection(log._conn).cells]
    assert first == [c.id for c in notebook_from_projection(log._conn).cells]  # deterministic
    assert len(set(first)) == len(ids)
    assert first[2] == "a-b" and first[3] == "a_b" and first[7] == "c"  # valid ids are kept


def test_sql_cells_export_as_code_ai_cells_as_markdown_and_come_back(store):
    log = store.log("nb")
    log.append(
        [
            make_event("notebookCreated", title="T"),
            make_event(
                "cellCreated",
                cellId="q",
                cellType="sql",
                fractionalIndex="a0",
                source="SELECT 1",
                metadata={"runtimed": {"connection": "db"}},
            ),
            make_event("cellCreated", cellId="ai", cellType="ai", fractionalIndex="a1", source="explain"),
        ],
        HUMAN,
    )
    exported = notebook_from_projection(log._conn)
    assert [c.cell_type for c in exported.cells] == ["code", "markdown"]  # (AI cells: tests/test_ai_cells.py)
    assert exported.cells[0].metadata["runtimed"] == {"connection": "db", "cell_type": "sql"}
    cells = [
        e["args"] for e in notebook_to_events(read_ipynb(write_ipynb(exported))) if e["name"] == "cellCreated"
    ]
    assert [(c["cellType"], c["metadata"]) for c in cells] == [
        ("sql", {"runtimed": {"connection": "db"}}),
        ("ai", {}),
    ]


def test_markdown_turned_code_drops_attachments_on_export(store):
    log = store.log("nb")
    log.append(
        [
            make_event("notebookCreated", title="T"),
            make_event(
                "cellCreated",
                cellId="m",
                cellType="markdown",
                fractionalIndex="a0",
                attachments={"x.png": {"image/png": PNG}},
            ),
            make_event("cellTypeChanged", cellId="m", cellType="code"),
        ],
        HUMAN,
    )
    nbformat.validate(notebook_from_projection(log._conn))


def test_artifacts_are_inlined_on_export(store):
    log = store.log("nb")
    blobs = {
        hashlib.sha256(PNG.encode()).hexdigest(): PNG.encode(),
        hashlib.sha256(b'{"k": 1}').hexdigest(): b'{"k": 1}',
    }
    png_ref, json_ref = ({"artifact": sha, "size": len(data)} for sha, data in blobs.items())
    log.append(
        [
            make_event("notebookCreated", title="T"),
            make_event("cellCreated", cellId="c", cellType="code", fractionalIndex="a0"),
            make_event(
                "outputAdded",
                outputId="o",
                cellId="c",
                outputType="display_data",
                data={"image/png": png_ref, "application/json": json_ref, "text/plain": "img"},
            ),
        ],
        HUMAN,
    )
    exported = notebook_from_projection(log._conn, resolve_artifact=blobs.__getitem__)
    assert exported.cells[0].outputs[0].data == {
        "image/png": PNG,
        "application/json": {"k": 1},
        "text/plain": "img",
    }
    with pytest.raises(InvalidNotebookError) as info:
        notebook_from_projection(log._conn)
    assert info.value.code == "artifact_unresolved" and png_ref["artifact"] in info.value.message


# --- invalid files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"nbformat": 4,\n "cells": [\n    1 2]}', "line 3 column 7: Expecting ','"),
        ("", "empty"),
        ("   ", "empty"),
        ("[1, 2]", "top level is a JSON list"),
        ('{"cells": []}', "no 'nbformat' key"),
        ('{"nbformat": 9, "nbformat_minor": 0}', "unsupported nbformat version 9"),
        ('{"nbformat": "4"}', "unsupported nbformat version"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "id": "a", '
            '"metadata": {}, "source": "", "outputs": [{"output_type": "stream", "name": "stdout", "text": 5}], '
            '"execution_count": null}]}',
            "cells[0].outputs[0].text",
        ),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "python", "id": "a", '
            '"metadata": {}, "source": ""}]}',
            "cells[0]",
        ),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": 1}}, "cells": []}',
            "metadata.kernelspec",
        ),
    ],
)
def test_invalid_notebooks_raise_a_clear_error(data, expected):
    with pytest.raises(InvalidNotebookError) as info:
        read_ipynb(data)
    assert expected in info.value.message
    assert info.value.code == "invalid_notebook"


def test_truncated_files_are_rejected_and_nothing_is_stored(store):
    text = write_ipynb(rich_outputs())
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 3):
        with pytest.raises(InvalidNotebookError) as info:
            nb = read_ipynb(text[:cut])
            import_into(store, "truncated", nb)  # never reached
        assert "line" in info.value.message
    assert not store.exists("truncated")


def test_valid_nbformat_that_our_catalog_refuses_names_the_cell():
    nb = v4.new_notebook(
        cells=[
            v4.new_code_cell("", id="a"),
            v4.new_code_cell("", id="b", outputs=[v4.new_output("stream", name="log", text="x")]),
        ]
    )
    with pytest.raises(InvalidNotebookError) as info:
        notebook_to_events(read_ipynb(write_ipynb(nb)))
    assert info.value.message.startswith("cells[1]: ") and "name" in info.value.message


# --- YAML notebooks -------------------------------------------------------------------------------

YAML = """
metadata:
  title: Greeting
  kernel: python3
parameters:
  name: world
  count: 3
  ratio: 0.5
  flags: [true, null]
  nested: {"a b": "it's \\"quoted\\"", n: [1, 2]}
cells:
  - id: hello
    source: print(f"hello {name}")
  - id: notes
    cell_type: markdown
    source: "# Notes"
    tags: [doc, intro]
"""


def test_yaml_notebook_imports(store):
    nb, params = read_yaml_notebook(YAML)
    nbformat.validate(nb)
    assert params["name"] == "world" and params["count"] == 3
    assert nb.metadata.title == "Greeting"
    assert nb.metadata.kernelspec["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "code" and first.metadata.tags == ["parameters"]
    namespace: dict = {}
    exec(first.source, namespace)
    assert {k: namespace[k] for k in params} == params
    assert [c.id for c in nb.cells] == ["parameters", "hello", "notes"]
    assert nb.cells[2].cell_type == "markdown" and nb.cells[2].metadata.tags == ["doc", "intro"]
    import_into(store, "yaml", nb)
    exported = store.log("yaml").view(notebook_from_projection)
    assert normal(exported) == normal(nb)
    assert store.log("yaml").info()["title"] == "Greeting"


def test_yaml_runtime_key_and_no_parameters():
    nb, params = read_yaml_notebook("metadata: {runtime: ir}\ncells:\n  - {id: a, source: '1'}\n")
    assert params == {} and [c.id for c in nb.cells] == ["a"]
    assert nb.metadata.kernelspec["name"] == "ir"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cells: [\n  {id: a", "not valid YAML: line"),
        ("- just a list", "a YAML notebook is a mapping"),
        ("cells: {id: a}", "cells: expected a list"),
        (
            "cells:\n  - {id: a, source: x}\n  - {id: b, source: y}\n  - {id: c, source: [1]}",
            "cells[2].source: expected a string",
        ),
        ("cells:\n  - {id: a}", "cells[0].source: missing"),
        ("cells:\n  - {id: a, source: x, cell_type: python}", "cells[0].cell_type"),
        ("cells:\n  - {id: a, source: x, tags: x}", "cells[0].tags"),
        ("cells:\n  - {id: a, source: x}\n  - {id: a, source: y}", "cells[1].id: duplicate"),
        ("cells:\n  - {id: 'has space', source: x}", "cells[0].id"),
        ("cells:\n  - {id: a, source: x, colour: red}", "cells[0]: unknown keys"),
        ("cells:\n  - 5", "cells[0]: expected a mapping"),
        ("parameters: {not-valid: 1}\ncells: []", "parameters.not-valid: not a valid Python identifier"),
        ("parameters: {when: 2024-01-02}\ncells: []", "parameters.when: unsupported value"),
        ("parameters: [1]\ncells: []", "parameters: expected a mapping"),
        ("metadata: {kernel: python3, runtime: ir}\ncells: []", "disagree"),
        ("metadata: {kernel: 5}\ncells: []", "metadata.kernel"),
        ("metadata: {title: [x]}\ncells: []", "metadata.title"),
        ("cells: []\nextra: 1", "unknown top-level keys"),
    ],
)
def test_yaml_errors_name_the_path(text, expected):
    with pytest.raises(InvalidNotebookError) as info:
        read_yaml_notebook(text)
    assert expected in info.value.message


# --- files and URLs -------------------------------------------------------------------------------


def test_load_and_save_through_fsspec(tmp_path):
    nb = rich_outputs()
    save_notebook(nb, "memory://nbs/rich.ipynb")
    assert normal(load_notebook("memory://nbs/rich.ipynb")) == normal(nb)
    local = tmp_path / "rich.ipynb"
    save_notebook(nb, str(local))
    assert normal(load_notebook(str(local))) == normal(nb)
    with fsspec.open("memory://nbs/g.yaml", "w") as f:
        f.write(YAML)
    yaml_nb = load_notebook("memory://nbs/g.yaml")
    assert yaml_nb.cells[0].metadata.tags == ["parameters"]
    save_notebook(yaml_nb, "memory://nbs/again.yml")
    again = load_notebook("memory://nbs/again.yml")
    assert normal(again) == normal(yaml_nb)


def test_format_by_extension_and_missing_files(tmp_path):
    with pytest.raises(InvalidNotebookError) as info:
        load_notebook("memory://nbs/notes.txt")
    assert info.value.code == "unknown_format" and ".ipynb" in info.value.message
    with pytest.raises(FileNotFoundError):
        load_notebook(str(tmp_path / "missing.ipynb"))
    with fsspec.open("memory://nbs/broken.ipynb", "w") as f:
        f.write('{"nbformat": 4,')
    with pytest.raises(InvalidNotebookError):
        load_notebook("memory://nbs/broken.ipynb")


def test_examples_are_valid_and_equivalent():
    ipynb = load_notebook(str(EXAMPLES / "params.ipynb"))
    yaml_nb = load_notebook(str(EXAMPLES / "params.yaml"))
    nbformat.validate(ipynb)
    params = [c for c in ipynb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    namespace: dict = {}
    exec(params[0].source, namespace)
    assert namespace["name"] == "world" and namespace["count"] == 3
    assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in yaml_nb.cells]
    assert ipynb.metadata.kernelspec == yaml_nb.metadata.kernelspec
