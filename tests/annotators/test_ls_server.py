"""Where the Label Studio virtual environment is looked for (no server is started)."""

from distill_ner.annotators.ls_server import REPO, find_ls_venv, ls_venv


def test_venv_lookup_order(tmp_path):
    repo, cwd = tmp_path / "repo", tmp_path / "work"
    cwd.mkdir()
    # nothing set and no .venv-ls here: the checkout's (an editable install), even if it is missing
    assert find_ls_venv({}, cwd, repo) == repo / ".venv-ls"
    # a .venv-ls in the current directory wins over the checkout's
    (cwd / ".venv-ls").mkdir()
    assert find_ls_venv({}, cwd, repo) == cwd / ".venv-ls"
    # DISTILL_LS_VENV wins over both; an empty value counts as unset
    assert find_ls_venv({"DISTILL_LS_VENV": str(tmp_path / "elsewhere")}, cwd, repo) == tmp_path / "elsewhere"
    assert find_ls_venv({"DISTILL_LS_VENV": ""}, cwd, repo) == cwd / ".venv-ls"


def test_a_file_named_venv_ls_is_not_a_venv(tmp_path):
    (tmp_path / ".venv-ls").write_text("")
    assert find_ls_venv({}, tmp_path, tmp_path / "repo") == tmp_path / "repo" / ".venv-ls"


def test_ls_venv_looks_from_the_environment_and_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILL_LS_VENV", raising=False)
    monkeypatch.chdir(tmp_path)
    assert ls_venv() == REPO / ".venv-ls"
    (tmp_path / ".venv-ls").mkdir()
    assert ls_venv() == tmp_path / ".venv-ls"
    monkeypatch.setenv("DISTILL_LS_VENV", "/opt/ls")
    assert str(ls_venv()) == "/opt/ls"
