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
* **Checksums** (``policy.verify_checksums``): the sender hashes each non-zero page, the
  receiver hashes what it wrote and a mismatch re-sends the page.  What is left silent is a
  bad page whose hash still matches: ``2^-64`` for a 64-bit hash (xxHash64/CRC-64 class).
  The time cost is the hashing (``host.hash_gib_s_per_core`` x ``host.spare_cores``; the
  page goes at the slower of wire and hash, see :meth:`Policy.link`) plus re-sending the bad
  pages.  Default 4 GiB/s per core is **ours**, conservative for non-cryptographic 64-bit
  hashes (xxHash's README lists XXH64 near 20 GB/s per core on a 2019 desktop CPU —
  **secondary**).

``corruption_probability`` = probability that at least one page of the migration arrives
silently corrupted: ``1 - (1 - p_page)^(pages moved)``, pages moved = bytes on the link /
page size (re-sent pages count again).  Computed with ``log1p``/``expm1`` so that 1e-30
survives.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_range

#: SECDED: 64 data bits + 8 check bits
ECC_WORD_BITS = 72
ECC_DATA_BITS = 64
#: residual probability that a checksum misses a corrupted page (64-bit hash)
HASH_MISS = 2.0**-64


def check_host_reliability(host) -> None:
    check_range("bit_error_rate", host.bit_error_rate, 0, 0.01)
    check_range("hash_gib_s_per_core", host.hash_gib_s_per_core, 0, None, lo_open=True)


def _log1m(x):
    """log(1 - x), accurate for tiny x."""
    return np.log1p(-np.minimum(np.asarray(x, dtype=float), 1.0 - 1e-300))


def page_error_probability(p_bit, page_bytes, ecc) -> np.ndarray:
    """Probability that one page arrives wrong (before any checksum)."""
    p = np.asarray(p_bit, dtype=float)
    bits = np.asarray(page_bytes, dtype=float) * 8.0
    plain = -np.expm1(bits * _log1m(p))
    n = ECC_WORD_BITS
    # P(>= 2 flips in a word): sum the first terms of the binomial tail (p is small).
    word = sum(math.comb(n, k) * p**k * (1.0 - p) ** (n - k) for k in range(2, 7))
    word = np.where(p > 1e-3, 1.0 - (1.0 - p) ** n - n * p * (1.0 - p) ** (n - 1), word)
    ecc_page = -np.expm1(bits / ECC_DATA_BITS * _log1m(word))
    return np.where(np.asarray(ecc, dtype=bool), ecc_page, plain)


def corruption(transferred_bytes, page_bytes, p_bit, ecc, verify):
    """(probability that >= 1 page is silently corrupted, expected pages re-sent).

    All arguments broadcast (scalars or arrays over migrations).
    """
    pages = np.asarray(transferred_bytes, dtype=float) / np.asarray(page_bytes, dtype=float)
    p_page = page_error_probability(p_bit, page_bytes, ecc)
    verify = np.asarray(verify, dtype=bool)
    silent = np.where(verify, p_page * HASH_MISS, p_page)
    prob = -np.expm1(pages * _log1m(silent))
    resent = np.where(verify, pages * p_page / np.maximum(1.0 - p_page, 1e-300), 0.0)
    return prob, resent
