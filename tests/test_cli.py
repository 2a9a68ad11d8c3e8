from gear_core.cli import main


def test_init_info_and_highlight(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "gear"
    tiny = ["--decoder-layers", "1", "--ranking-layer", "-1"]
    assert main(["init", tiny_encoder_dir, str(out), "--shared-encoder", *tiny]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert '"document_encoder": 0' in capsys.readouterr().out
    document = tmp_path / "doc.txt"
    document.write_text("First sentence here. Second one there.", encoding="utf-8")
    assert main(["highlight", str(out), "--query", "second", "--file", str(document), "--generate"]) == 0
    printed = capsys.readouterr().out
    assert "(0:20) First sentence here." in printed or "(21:38) Second one there." in printed
    assert "evidence:" in printed


def test_highlight_reports_a_missing_file(tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "gear"
    assert main(["init", tiny_encoder_dir, str(out), "--decoder-layers", "1", "--ranking-layer", "-1"]) == 0
    assert main(["highlight", str(out), "--query", "q", "--file", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
