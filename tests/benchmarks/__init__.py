"""Tests of the peer runtime runners (benchmarks/peers)."""
