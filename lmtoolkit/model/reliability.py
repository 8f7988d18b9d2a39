"""Copy errors, ECC and end-to-end page checksums.

Every bit the migration moves is read from source DRAM, staged in buffers and written to
destination DRAM; ``host.bit_error_rate`` is the probability that it arrives flipped
(per bit moved, default 1e-15 — an illustrative figure, **ours**: DRAM field studies report
errors per device-hour, not per copied bit).

* **Without ECC** a page of ``b`` bits arrives wrong with ``p_page = 1 - (1 - p)^b`` and
  nothing notices: silent corruption.
* **With ECC** (SECDED: 8 check bits per 64-bit word, 72 bits stored — **published**
  Hamming/Hsiao design used by server DIMMs) one flip per word is corrected; two or more are
  not (two are detected, three or more may be miscorrected).  We count a word with two or
  more flips as a corrupted page (**conservative**): ``p_word = P(Binomial(72, p) >= 2) ≈
  C(72, 2) p^2``, ``p_page = 1 - (1 - p_word)^(b / 64)``.
* **Checksums** (``policy.verify_checksums``): the sender hashes each non-zero page it
  sends, the receiver hashes what it wrote and a mismatch re-sends the page — the "careful
  file transfer" of Saltzer, Reed & Clark, "End-to-End Arguments in System Design", ACM TOCS
  2(4), 1984 (the checksum is computed at the source, recomputed at the destination after
  the data is stored, and the transfer retried on a mismatch; **published**, the design, not
  a vendor's implementation: no hypervisor we model verifies pages this way).  What is left
  silent is a bad page whose hash still matches: ``2^-64`` for a 64-bit hash (xxHash64/CRC-64
  class).  Default 4 GiB/s of hashing per core is **ours**, conservative for
  non-cryptographic 64-bit hashes (xxHash's README lists XXH64 near 20 GB/s per core on a
  2019 desktop CPU — **secondary**).

  *Re-sends* happen where the bad page was found, inside the phase that sent it: a page of
  a pre-copy pass is re-sent in that pass, a page of the pause in the pause.  Each
  transmission of a page arrives right with ``q = 1 - p_page`` independently, so the
  transmissions until one passes are geometric, ``1 / q`` expected (the retransmission count
  of an ARQ protocol over a channel that loses a frame with probability ``p_page``: the
  textbook stop-and-wait / selective-repeat result, e.g. Bertsekas & Gallager, *Data
  Networks*, 2nd ed., 1992, section 2.4 — **published**, standard; not re-read here).  Both
  engines take it into the per-page cost of :meth:`Policy.link
  <lmtoolkit.policies.base.Policy.link>` (:func:`transmissions_per_page`): a verified page
  costs ``1 / q`` times its wire bytes and its time (the wire, or the hashing where that is
  slower, each transmission hashed again on both sides).  So the timeout, the downtime, the
  rounds' bytes, the bandwidth a policy measures and its verdict all see the re-sends; a
  bad enough error rate makes a migration stop converging and time out.  Where ``p_page``
  is 1 to double precision (``q`` < 2^-53: more than 9e15 expected transmissions per page)
  no page can be expected to arrive at all, and the scenario is refused up front
  (:func:`check_verifiable`) rather than run to absurd or infinite totals.
* **Hashing CPU** (``checksum_cpu_time``, :func:`checksum_cpu_s`): CPU-seconds, both hosts —
  each transmission of a verified page is hashed once on the sender (before it goes) and
  once on the receiver (after it is written): ``2 x page_bytes / hash rate of one core`` per
  transmission (the rate of one core because CPU-seconds are the work, whatever the number
  of cores that share it; ``host.spare_cores`` sets how long it takes, through the link).
  The energy model charges the same CPU-seconds, half to each host
  (:mod:`lmtoolkit.model.energy`).

``corruption_probability`` = probability that at least one page of the migration arrives
silently corrupted: ``1 - (1 - p_silent)^(pages moved)``, pages moved = bytes on the link /
page size (re-sent pages count again: they are in the bytes), ``p_silent = p_page`` without
checksums and ``p_page x 2^-64`` with.  Computed with ``log1p``/``expm1`` so that 1e-30
survives; ``q`` is computed in the log domain too (``exp(bits x log1p(-p))``), so that
``1 / q`` stays accurate where ``p_page`` is close to 1.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, check_range

#: SECDED: 64 data bits + 8 check bits
ECC_WORD_BITS = 72
ECC_DATA_BITS = 64
#: residual probability that a checksum misses a corrupted page (64-bit hash)
HASH_MISS = 2.0**-64


def check_host_reliability(host) -> None:
    check_range("bit_error_rate", host.bit_error_rate, 0, 0.01)
    check_range("hash_gib_s_per_core", host.hash_gib_s_per_core, 0, None, lo_open=True)


def _log1m(x):
    """log(1 - x), accurate for tiny x; ``x`` = 1 is taken as the largest double below 1
    (log 2^-53 = -36.7), so that a certain event gives probabilities of 1, not -inf x 0."""
    return np.log1p(-np.minimum(np.asarray(x, dtype=float), np.nextafter(1.0, 0.0)))


def page_log_survival(p_bit, page_bytes, ecc) -> np.ndarray:
    """``log q``: the log of the probability that one page arrives right (before any
    checksum), accurate where ``q`` itself underflows."""
    p = np.asarray(p_bit, dtype=float)
    bits = np.asarray(page_bytes, dtype=float) * 8.0
    plain = bits * _log1m(p)
    n = ECC_WORD_BITS
    # P(>= 2 flips in a word): sum the first terms of the binomial tail (p is small).
    word = sum(math.comb(n, k) * p**k * (1.0 - p) ** (n - k) for k in range(2, 7))
    word = np.where(p > 1e-3, 1.0 - (1.0 - p) ** n - n * p * (1.0 - p) ** (n - 1), word)
    ecc_page = bits / ECC_DATA_BITS * _log1m(word)
    return np.where(np.asarray(ecc, dtype=bool), ecc_page, plain)


def page_error_probability(p_bit, page_bytes, ecc) -> np.ndarray:
    """``p_page``: probability that one page arrives wrong (before any checksum)."""
    return -np.expm1(page_log_survival(p_bit, page_bytes, ecc))


def page_ok_probability(p_bit, page_bytes, ecc) -> np.ndarray:
    """``q = 1 - p_page``: probability that one transmission of a page arrives right (0 only
    where it underflows double precision)."""
    return np.exp(page_log_survival(p_bit, page_bytes, ecc))


def transmissions_per_page(q, verify):
    """Expected transmissions of a page until one arrives right: ``1 / q`` where it is
    verified (geometric, module doc), 1 where nothing checks it."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(np.asarray(verify, dtype=bool), 1.0 / q, 1.0)


def check_verifiable(host, page_bytes, verify) -> None:
    """Refuse checksums on pages that cannot pass them: where ``p_page`` is 1 to double
    precision (``q`` < 2^-53), every transmission of a page is bad as far as the arithmetic
    can tell and the re-sends never end (``1 / q`` is more than 9e15 transmissions, or
    infinite where ``q`` underflows) — there is no migration to simulate."""
    if not verify:
        return
    log_q = float(page_log_survival(host.bit_error_rate, page_bytes, host.ecc))
    if -math.expm1(log_q) < 1.0:
        return
    raise ConfigError(
        "host.bit_error_rate",
        host.bit_error_rate,
        "",
        message=(
            f"host.bit_error_rate={host.bit_error_rate:g} with policy.verify_checksums=true: a "
            f"{page_bytes / 1024:g} KiB page{'' if host.ecc else ' without ECC'} arrives right "
            f"with probability e^{log_q:.4g} (below 2^-53: it fails its checksum with "
            "probability 1 in double precision), so every page would be re-sent forever; lower "
            "the bit error rate, set host.ecc=true or use smaller pages"
        ),
    )


def resent_share(p_page, verify):
    """Share of a verified page's transmissions that are re-sends: ``(1/q - 1) / (1/q) =
    p_page`` (0 where nothing is verified)."""
    return np.where(np.asarray(verify, dtype=bool), np.asarray(p_page, dtype=float), 0.0)


def checksum_cpu_s(nonzero_sent, page_bytes, hash_cpu_s_per_byte):
    """Hashing CPU-seconds on *one* host for ``nonzero_sent`` verified page transmissions:
    each is hashed once per side at one core's rate (``hash_cpu_s_per_byte`` = 1 / (hash
    GiB/s per core), 0 where nothing is verified).  The record's ``checksum_cpu_time`` is
    both hosts' (2x); :mod:`lmtoolkit.model.energy` charges this to each host."""
    return np.asarray(nonzero_sent, dtype=float) * page_bytes * hash_cpu_s_per_byte


def corruption(pages_moved, p_page, verify):
    """Probability that >= 1 page arrives silently corrupted, over ``pages_moved`` page
    transmissions (re-sends included) each wrong with ``p_page``.  Arguments broadcast."""
    pages = np.asarray(pages_moved, dtype=float)
    p_page = np.asarray(p_page, dtype=float)
    silent = np.where(np.asarray(verify, dtype=bool), p_page * HASH_MISS, p_page)
    return -np.expm1(pages * _log1m(silent))
