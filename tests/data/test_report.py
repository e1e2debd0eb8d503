"""The run report renders tables and the F1-vs-size plot."""

from distill_ner.data.report import write_report
from distill_ner.data.tables import markdown_table


def test_report_files(tmp_path):
    table = markdown_table([{"model": "teacher", "f1": 0.91234, "parameters": 22_000_000}, {"model": "student", "f1": 0.9}])
    assert table.splitlines()[2] == "| teacher | 0.912 | 22000000 |"
    models = [{"model": "teacher", "f1": 0.91, "parameters": 22e6}, {"model": "student", "f1": 0.9, "parameters": 11e6}]
    path = write_report(tmp_path, "Run demo", {"Students": table}, models)
    text = path.read_text()
    assert "## Students" in text and "f1_vs_params.png" in text
    assert (tmp_path / "f1_vs_params.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.html").read_text()
    assert "<table>" in page and "<td>teacher</td>" in page and 'src="f1_vs_params.png"' in page
