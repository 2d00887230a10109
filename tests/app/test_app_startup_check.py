"""Gradio's start-up check of its own server (`pages.hardening.patient_localhost_check`): on a loaded machine the
first answers can take longer than 3 s, and Gradio's check gave up at the first timeout, so the app exited with
"When localhost is not accessible, a shareable link must be created" (seen in CI beside a busy benchmark)."""
from __future__ import annotations

import httpx
import pytest
from gradio import networking

from pages.hardening import patient_localhost_check


@pytest.fixture
def check(monkeypatch):
    monkeypatch.setattr(networking, "url_ok", networking.url_ok)  # restored after the test
    monkeypatch.setattr("time.sleep", lambda s: None)
    patient_localhost_check(wait_s=60)
    return networking.url_ok


def _head(answers):
    calls = []

    def head(url, **kw):
        calls.append(url)
        a = answers[min(len(calls) - 1, len(answers) - 1)]
        if isinstance(a, Exception):
            raise a
        return httpx.Response(a)
    return head, calls


def test_a_slow_server_is_waited_for(check, monkeypatch):
    head, calls = _head([httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), 200])
    monkeypatch.setattr(httpx, "head", head)
    assert check("http://127.0.0.1:1/") is True and len(calls) == 3


def test_a_refused_connection_still_fails_at_once(check, monkeypatch):
    head, calls = _head([httpx.ConnectError("refused")])
    monkeypatch.setattr(httpx, "head", head)
    assert check("http://127.0.0.1:1/") is False and len(calls) == 1


def test_a_wrong_answer_fails_after_five_tries(check, monkeypatch):
    head, calls = _head([500])
    monkeypatch.setattr(httpx, "head", head)
    assert check("http://127.0.0.1:1/") is False and len(calls) == 5
