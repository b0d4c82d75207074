"""The quick start's first command: the demo runs the connector on the sandbox and says what it did."""

from __future__ import annotations

from connector.demo import run_demo


def test_the_demo_syncs_the_sandbox_and_shows_contracts_tax_ids_and_trials(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no mappings/ here: the packaged defaults are used
    lines: list[str] = []
    assert run_demo(lines.append, accounts=12, orders=6) == 0
    text = "\n".join(lines)
    assert "== First sync ==" in text and "== Second sync (nothing changed in Salesforce) ==" in text
    assert "Amendment (+5 seats): updated" in text and "Renewal (new price): updated" in text
    assert "tax ID eu_vat DE123456789" in text
    assert "trialing until" in text
