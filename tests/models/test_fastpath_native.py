"""The compiled int8 GEMV kernel: numerics, dispatch from int8_matmul, and fallbacks."""

from __future__ import annotations

import logging

import pytest

from medlens.models.fastpath import native

torch = pytest.importorskip("torch")

LOAD = native.load  # the cached function (a test below swaps native.load for a spy)
HAS_KERNEL_HOST = "avx512f" in native.cpu_flags() and native._compiler() is not None


@pytest.fixture
def kernel(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    if not HAS_KERNEL_HOST:
        pytest.skip("needs an AVX-512 CPU and a C compiler")
    monkeypatch.setenv("MEDLENS_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.delenv("MEDLENS_NATIVE_KERNELS", raising=False)
    native.load.cache_clear()
    k = native.load()
    assert k is not None and k.path.parent == tmp_path / "kernels"
    yield k
    LOAD.cache_clear()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(
    ("m", "n", "k"),
    [
        (1, 1000, 640),  # narrow input: one row at a time
        (1, 2562, 5120),  # wide input: four rows side by side, N % 4 = 2 left over
        (1, 7, 4200),  # wide, K % 64 != 0: scalar tail
        (2, 33, 700),
        (3, 100, 70),  # K < 64: all tail
        (4, 65, 1024),
    ],
)
def test_kernel_matches_a_float64_reference(kernel, dtype: str, m: int, n: int, k: int) -> None:  # type: ignore[no-untyped-def]
    dt = getattr(torch, dtype)
    torch.manual_seed(m * 1000 + n + k)
    q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scale = (torch.rand(n) * 0.02 + 1e-3).to(dt)
    x = torch.randn(m, k).to(dt)
    want = (x.double() @ q.double().t()) * scale.double()
    out = torch.empty(m, n, dtype=dt)
    kernel.int8_gemv(x, q, scale, out, threads=2)
    err = float((out.double() - want).abs().max())
    # fp32 accumulation; bf16 output rounds to 8 significant bits.
    tol = 1e-5 if dt == torch.float32 else 2**-8
    assert err <= tol * float(want.abs().max()), err


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(
    ("m", "n", "k", "g"),
    [
        (1, 1000, 640, 64),  # narrow input, one row at a time
        (1, 2562, 5120, 128),  # wide input: four rows side by side, 2 rows left over
        (1, 5, 4352, 64),  # wide, fewer rows than one block of four
        (2, 33, 768, 128),
        (4, 65, 1024, 256),
    ],
)
def test_grouped_kernel_matches_a_float64_reference(
    kernel, dtype: str, m: int, n: int, k: int, g: int
) -> None:  # type: ignore[no-untyped-def]
    dt = getattr(torch, dtype)
    torch.manual_seed(m * 1000 + n + k + g)
    q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scale = (torch.rand(n, k // g) * 0.02 + 1e-3).to(dt)
    x = torch.randn(m, k).to(dt)
    w = q.double().view(n, k // g, g) * scale.double()[..., None]
    want = x.double() @ w.view(n, k).t()
    out = torch.empty(m, n, dtype=dt)
    kernel.int8_gemv(x, q, scale, out, threads=2)
    err = float((out.double() - want).abs().max())
    tol = 1e-5 if dt == torch.float32 else 2**-8
    assert err <= tol * float(want.abs().max()), err


@pytest.mark.parametrize(("k", "groups"), [(640, 10 * 2), (96, 3)])  # 32 columns per group
def test_kernel_refuses_groups_it_cannot_tile(kernel, k: int, groups: int) -> None:  # type: ignore[no-untyped-def]
    q = torch.zeros(8, k, dtype=torch.int8)
    with pytest.raises(RuntimeError, match="refused"):
        kernel.int8_gemv(torch.randn(1, k), q, torch.ones(8, groups), torch.empty(1, 8), threads=1)


def test_kernel_refuses_more_rows_than_it_holds(kernel) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(5, 64)
    q = torch.zeros(8, 64, dtype=torch.int8)
    with pytest.raises(RuntimeError, match="refused"):
        kernel.int8_gemv(x, q, torch.ones(8), torch.empty(5, 8), threads=1)


def test_int8_matmul_uses_the_kernel_for_decode_rows_only(kernel, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.models.fastpath import int8

    calls: list[tuple[int, ...]] = []

    class Spy:
        def int8_gemv(self, x, q, scale, out, threads):  # type: ignore[no-untyped-def]
            calls.append(tuple(x.shape))
            kernel.int8_gemv(x, q, scale, out, threads)

    monkeypatch.setattr(native, "load", lambda: Spy())
    q = torch.randint(-127, 128, (96, 256), dtype=torch.int8)
    scale = torch.rand(96, dtype=torch.bfloat16) * 0.01
    for rows in (1, 4, 9):
        x = torch.randn(1, rows, 256, dtype=torch.bfloat16)
        out = int8.int8_matmul(x, q, scale, small_batch=4)
        want = (x.float() @ q.float().t()) * scale.float()
        assert float((out.float() - want).abs().max()) <= 0.02 * float(want.abs().max())
    assert calls == [(1, 256), (4, 256)]  # 9 rows: the block-dequantized bf16 path


def test_disabled_by_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDLENS_NATIVE_KERNELS", "0")
    native.load.cache_clear()
    try:
        assert native.load() is None
    finally:
        native.load.cache_clear()


def test_a_failing_compiler_falls_back_with_a_warning(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    if "avx512f" not in native.cpu_flags():
        pytest.skip("needs an AVX-512 CPU")
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: no compiler here' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    monkeypatch.setenv("MEDLENS_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.delenv("MEDLENS_NATIVE_KERNELS", raising=False)
    native.load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="medlens.models.fastpath.native"):
            assert native.load() is None
        assert "no compiler here" in caplog.text
        # int8_matmul still works, on torch's kernel.
        from medlens.models.fastpath.int8 import int8_matmul

        q = torch.randint(-127, 128, (16, 64), dtype=torch.int8)
        out = int8_matmul(torch.randn(1, 64), q, torch.ones(16), small_batch=4)
        assert out.shape == (1, 16)
    finally:
        native.load.cache_clear()


def test_intel_builds_prefetch_and_others_do_not() -> None:
    # Measured: the prefetches help Intel cores and slowed Zen 4 (int8_gemv.c).
    intel = native.compile_flags("GenuineIntel")
    assert f"-DMEDLENS_PREFETCH={native.INTEL_PREFETCH_BYTES}" in intel
    assert native.compile_flags("AuthenticAMD") == native.CFLAGS
    assert set(native.CFLAGS) <= set(intel)
