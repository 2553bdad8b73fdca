"""The progress hook the web page's progress bar and cancel button use: ``callback(done,
total)`` after each tile of :func:`denoise.tiling.tiled`, passed through
:func:`denoise.inference.restore`; an exception it raises stops the run."""
from __future__ import annotations

import pytest
import torch

from denoise.inference import restore
from denoise.models.dct import DCTDenoiser
from denoise.tiling import tiled


def test_tiled_calls_back_after_each_tile_and_the_result_is_unchanged(generator):
    x = torch.rand(1, 1, 60, 50, generator=generator)
    calls = []
    y = tiled(DCTDenoiser(), x, 0.1, tile=16, callback=lambda d, t: calls.append((d, t)))
    total = calls[0][1]
    assert total > 1 and calls == [(i, total) for i in range(1, total + 1)]
    assert torch.equal(y, tiled(DCTDenoiser(), x, 0.1, tile=16))  # the default: no callback


def test_restore_passes_the_callback_through_and_counts_an_untiled_run_as_one_tile(generator):
    x = torch.rand(1, 3, 40, 36, generator=generator)
    calls = []
    plain = restore(x, "dct", 0.1, tile=None)
    hooked = restore(x, "dct", 0.1, tile=None, callback=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)] and torch.equal(plain.output, hooked.output)
    calls.clear()
    tiled_run = restore(x, "dct", 0.1, tile=16, callback=lambda d, t: calls.append((d, t)))
    assert tiled_run.tiled and len(calls) == calls[-1][1] > 1 and calls[-1][0] == calls[-1][1]


def test_an_exception_from_the_callback_stops_the_run(generator):
    class Stop(Exception):
        pass

    seen = []

    def cancel_after_two(done, total):
        seen.append(done)
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        restore(torch.rand(1, 1, 64, 64, generator=generator), "dct", 0.1, tile=16,
                callback=cancel_after_two)
    assert seen == [1, 2]  # no tile ran after the cancel
