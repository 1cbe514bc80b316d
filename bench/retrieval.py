"""Retrieval by binary codes: Hamming search on the learned codes beside exact nearest neighbours on
the float latents and on the raw features.

For each real table (at its own size), ``AutoencoderReducer(latent_dim=8)`` with its defaults is
fitted once; its latents are hashed to 8, ``--bits`` and twice ``--bits`` bits two ways: the
product's balanced projections (``ae_models.hashing``) and the same projections turned by ITQ's
learned rotation (Gong & Lazebnik, CVPR 2011), the classic way to cut quantisation loss. For 1,000 query rows of the table,
recall@10 is the share of a row's 10 exact nearest neighbours that a search returns among its 10:
against neighbours in the raw features (real columns standardised, nulls at the median, categories
one-hot: what a user would search without latentfeed) and against neighbours on the float latents.

Then at ``--rows`` (1M) rows, diamonds resampled with 1 % jitter on its real columns (the model stays
fitted on the real rows): bytes per row held by each index, queries/s of faiss's exact indexes
(``IndexBinaryFlat`` on codes, ``IndexFlatL2`` on latents and on raw features) and recall@10, and
the two-stage search ``neighbours(rerank=...)`` runs: the 100 nearest by Hamming re-ranked on the
float latents.

    .venv/bin/python bench/retrieval.py [--bits 64] [--rows 1000000] [--tables diamonds,movies,flchain,digits]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ae_models import AutoencoderReducer  # noqa: E402
from ae_models.hashing import BinaryHasher  # noqa: E402
from bench.real_datasets import Dataset, load  # noqa: E402

K, QUERIES = 10, 1000
SHORTLIST = 100  # rows the two-stage search re-ranks
ITQ_ITERATIONS = 50


def itq(hasher: BinaryHasher, Z: np.ndarray, seed: int = 0) -> BinaryHasher:
    """``hasher`` with ITQ: the orthogonal R that brings sign(V R) closest to V R (fix B, solve Procrustes)."""
    P = np.asarray(hasher.projection)
    V = (Z - np.asarray(hasher.mean)) @ P
    R, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((P.shape[1],) * 2))
    for _ in range(ITQ_ITERATIONS):
        U, _, Wt = np.linalg.svd(np.where(V @ R >= 0, 1.0, -1.0).T @ V)
        R = (U @ Wt).T
    return BinaryHasher(hasher.mean, (P @ R).tolist(), np.median(V @ R, axis=0).tolist())


def raw_space(d: Dataset, frame: pl.DataFrame | None = None) -> np.ndarray:
    """The table as a user would search it: standardised reals (nulls at the median), 0/1, one-hot."""
    parts = [("real", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), d.real)]
    if d.binary:
        parts.append(("binary", SimpleImputer(strategy="most_frequent"), d.binary))
    if d.categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), d.categorical))
    ct = ColumnTransformer(parts).fit(d.frame.to_pandas())
    pdf = (d.frame if frame is None else frame).to_pandas()
    pdf[d.categorical] = pdf[d.categorical].astype(object).where(pdf[d.categorical].notna(), "<null>")
    return np.ascontiguousarray(ct.transform(pdf), dtype=np.float32)


def _search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    _, ids = index.search(queries, k + 1)
    return ids, len(queries) / (time.perf_counter() - t)


def knn_float(data: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float, int]:
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    ids, qps = _search(index, data[q], K)
    return ids, qps, data.shape[1] * 4


def knn_binary(codes: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float, int]:
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    ids, qps = _search(index, codes[q], K)
    return ids, qps, codes.shape[1]


def rerank(codes: np.ndarray, Z: np.ndarray, q: np.ndarray, shortlist: int) -> tuple[np.ndarray, float]:
    """The classic two-stage search: ``shortlist`` rows nearest by Hamming, re-ordered by their float latents."""
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    t = time.perf_counter()
    _, cand = index.search(codes[q], shortlist)
    d = ((Z[cand] - Z[q][:, None]) ** 2).sum(-1)
    found = np.take_along_axis(cand, np.argsort(d, axis=1)[:, :K + 1], 1)
    return found, len(q) / (time.perf_counter() - t)


def recall(found: np.ndarray, truth: np.ndarray, q: np.ndarray) -> float:
    """Mean share of each query's K true neighbours (itself excluded) among the K it got (itself excluded)."""
    hits = 0
    for row, f, t in zip(q, found, truth):
        f = [i for i in f if i != row][:K]
        t = [i for i in t if i != row][:K]
        hits += len(set(f) & set(t))
    return hits / (K * len(q))


def table_quality(name: str, bits: int, latent: int) -> None:
    d = load(name)
    t = time.perf_counter()
    est = AutoencoderReducer(latent_dim=latent, real=d.real, binary=d.binary, categorical=d.categorical).fit(d.frame)
    fit_s = time.perf_counter() - t
    raw, Z = raw_space(d), est.transform(d.frame)
    q = np.random.default_rng(0).choice(len(raw), min(QUERIES, len(raw)), replace=False)
    truth_raw, _, _ = knn_float(raw, q)
    truth_lat, _, _ = knn_float(Z, q)
    print(f"\n== {name}: {d.frame.height:,} rows, {raw.shape[1]} raw columns -> {latent} latents (fit {fit_s:.0f} s)")
    print(f"{'search on':<28} {'recall@10 vs raw':>17} {'vs latents':>11} {'bytes/row':>10}")
    print(f"{'raw features (exact)':<28} {1.0:>17.3f} {recall(truth_raw, truth_lat, q):>11.3f} {raw.shape[1] * 4:>10}")
    print(f"{'float latents (exact)':<28} {recall(truth_lat, truth_raw, q):>17.3f} {1.0:>11.3f} {Z.shape[1] * 4:>10}")
    for label, rotate in (("codes (default)", False), ("codes, ITQ-rotated", True)):
        for b in sorted({8, bits, bits * 2}):
            hasher = BinaryHasher.fit(Z, b, seed=0)
            codes = (itq(hasher, Z) if rotate else hasher).encode(Z)
            found, _, nbytes = knn_binary(codes, q)
            print(f"{label + f' {b} bits':<28} {recall(found, truth_raw, q):>17.3f} {recall(found, truth_lat, q):>11.3f} "
                  f"{nbytes:>10}")
    codes = BinaryHasher.fit(Z, bits, seed=0).encode(Z)
    found, _ = rerank(codes, Z, q, SHORTLIST)
    print(f"{f'codes {bits} bits, top {SHORTLIST} re-ranked':<28} {recall(found, truth_raw, q):>17.3f} "
          f"{recall(found, truth_lat, q):>11.3f} {codes.shape[1] + Z.shape[1] * 4:>10}")


def at_scale(rows: int, bits: int) -> None:
    d = load("diamonds")
    est = AutoencoderReducer(latent_dim=8, real=d.real, binary=d.binary, categorical=d.categorical,
                             code_bits=bits).fit(d.frame)
    rng = np.random.default_rng(1)
    big = d.frame[rng.integers(0, d.frame.height, rows)].with_columns(
        [pl.col(c) * pl.Series(1 + 0.01 * rng.standard_normal(rows)) for c in d.real])
    raw = raw_space(d, big)
    t = time.perf_counter()
    Z = est.transform(big)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    codes = est.hash_latents(Z)
    hash_s = time.perf_counter() - t
    q = rng.choice(rows, QUERIES, replace=False)
    truth, raw_qps, raw_bytes = knn_float(raw, q)
    lat, lat_qps, lat_bytes = knn_float(Z, q)
    hits, code_qps, code_bytes = knn_binary(codes, q)
    reranked, rerank_qps = rerank(codes, Z, q, SHORTLIST)
    print(f"\n== diamonds resampled to {rows:,} rows (1 % jitter), {bits}-bit codes: encode {rows / encode_s:,.0f} "
          f"rows/s, hash {rows / hash_s:,.0f} rows/s")
    print(f"{'index':<30} {'bytes/row':>9} {'index MB':>9} {'queries/s':>10} {'recall@10 vs raw':>17}")
    for label, nbytes, qps, found in (("raw features, IndexFlatL2", raw_bytes, raw_qps, truth),
                                      ("float latents, IndexFlatL2", lat_bytes, lat_qps, lat),
                                      ("binary codes, IndexBinaryFlat", code_bytes, code_qps, hits),
                                      (f"codes, top {SHORTLIST} re-ranked on latents", code_bytes + lat_bytes,
                                       rerank_qps, reranked)):
        print(f"{label:<30} {nbytes:>9} {nbytes * rows / 1e6:>9.1f} {qps:>10,.0f} {recall(found, truth, q):>17.3f}")
    print(f"codes against raw: {raw_bytes / code_bytes:.1f}x fewer bytes, {code_qps / raw_qps:.1f}x the queries/s; "
          f"against float latents: {lat_bytes / code_bytes:.1f}x fewer bytes, {code_qps / lat_qps:.1f}x the queries/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tables", default="diamonds,movies,flchain,digits")
    args = ap.parse_args()
    for name in filter(None, args.tables.split(",")):
        table_quality(name, args.bits, args.latent)
    if args.rows:
        at_scale(args.rows, args.bits)


if __name__ == "__main__":
    main()
