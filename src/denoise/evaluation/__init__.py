"""Evaluation: the standard test sets (:mod:`.testsets`), the benchmark with the protocol
of the published tables (:mod:`.bench`), the demo (:mod:`.demo`) and the report writers
(tables and comparison figures, :mod:`.report`). Every model runs through
:func:`denoise.inference.restore`."""
