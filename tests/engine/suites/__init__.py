"""Conformance suites, written once and run over every snapshotter (containerd's testsuite)."""
