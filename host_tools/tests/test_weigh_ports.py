"""``lanectl weigh monitor``/``verify`` on serial ports (ptys) with nothing, or nothing useful,
on the other end: an exit code and one line, never a retry loop or a traceback."""

from __future__ import annotations

import json
import os
import tty

import pytest

from host_tools import lanectl as lanectl_main


def lanectl(argv: list[str], *, as_json: bool = True) -> int:
    return lanectl_main.main([*argv, "--json"] if as_json else argv)


@pytest.fixture
def silent_port():
    """A serial port with nothing on the other end (a pty nobody writes to)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.mark.parametrize("command", [["monitor", "--seconds", "0.5"],
                                     ["verify", "--reference-kg", "100", "--seconds", "0.5"]])
def test_a_port_that_never_yields_a_frame_exits_1(silent_port, command, capsys):
    argv = ["weigh", command[0], "--port", silent_port, "--protocol", "yaohua-tf0", *command[1:]]
    assert lanectl(argv, as_json=False) == 1
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert f"no yaohua-tf0 frame from {silent_port}" in line and "weigh detect" in line
    assert lanectl(argv) == 1
    assert "no yaohua-tf0 frame" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]


def test_a_bad_trace_path_is_one_line_exit_2(silent_port, tmp_path, capsys):
    argv = ["weigh", "monitor", "--port", silent_port, "--protocol", "sma", "--record",
            str(tmp_path / "no" / "such" / "trace.csv")]
    assert lanectl(argv, as_json=False) == 2
    assert "cannot write the trace" in capsys.readouterr().err
