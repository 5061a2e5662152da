"""`make bench`'s attention section: mha vs gqa vs mqa KV-cache bytes (exact) and decoding throughput
(positive; no timing assertions, figures depend on the machine)."""

from __future__ import annotations

import json

from enhanced_tx.bench.__main__ import main


def test_quick_attention_section_reports_cache_bytes_in_proportion_to_kv_heads(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--dtypes", "fp32", "--sections", "attention", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Attention variants: KV cache and greedy decoding" in text and "KV cache MB" in text
    rows = {r["attention"]: r for r in json.loads(out.read_text())["attention"]}
    assert {name: r["n_kv_heads"] for name, r in rows.items()} == {"mha": 4, "gqa": 2, "mqa": 1}  # tiny: 4 heads
    # tiny: 2 decoder layers x (8 new + 64 source positions) x 64 head dim x 2 (K and V) x 4 bytes per KV head
    per_kv_head = 2 * 8 * (8 + 64) * 64 * 2 * 4
    assert {name: r["kv_cache_bytes"] for name, r in rows.items()} == {
        name: r["n_kv_heads"] * per_kv_head for name, r in rows.items()
    }
    assert all(r["tokens_per_s"] > 0 and r["batch"] == 8 for r in rows.values())

    assert main(["--from-json", str(out)]) == 0  # saved figures render the same table
    assert "Attention variants" in capsys.readouterr().out
