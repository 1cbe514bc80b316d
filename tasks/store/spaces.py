"""Latent spaces across model versions: each version's backward maps, recorded beside the table.

A version trained while a champion exists learns an affine map from its latents to the champion's on
the rows of its training window (``ae_models.alignment.LatentMap``) and composes it with the maps the
champion carries, so every version holds one map to each earlier version on its line. The maps are
decided at training and recorded then: in the table's state folder
(``spaces/model_version=V.json``, written as the version is registered, before any of its rows) and
in the version's MLflow run and served model. Readers asking for ``compatible_with=N`` read version
V's rows through V's map to N: no MLflow, no model.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ae_models.alignment import LatentMap
from ae_models.config import latent_names

from tasks.errors import FeatureVersionError
from tasks.store.objects import Storage

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer

SPACE = "latent_space"  # the column naming the version whose latent space a row's latents are in
FILE = "backward_maps.json"  # the maps' name in a version's MLflow run and served model


def learn(new: AutoencoderReducer, champion: AutoencoderReducer, champion_version: int,
          champion_maps: dict[int, LatentMap], window: pl.DataFrame,
          holdout: pl.DataFrame) -> tuple[dict[int, LatentMap], float]:
    """The new version's maps (to the champion, and through the champion's maps to every version it
    reaches) and how well the map carries the champion's space on ``holdout`` (1 - R^2 of the champion's
    latents: 0 exact, 1 no better than their mean)."""
    to_champion = LatentMap.fit(new.transform(window), champion.transform(window))
    error = to_champion.error(new.transform(holdout), champion.transform(holdout))
    maps = {champion_version: to_champion}
    maps.update({v: to_champion.then(m) for v, m in champion_maps.items()})
    return maps, error


def to_json(maps: dict[int, LatentMap]) -> str:
    """The maps of one version keyed by the version each reaches (newest first)."""
    return json.dumps({"maps": {str(v): m.to_dict() for v, m in sorted(maps.items(), reverse=True)}})


def from_json(text: str) -> dict[int, LatentMap]:
    return {int(v): LatentMap.from_dict(d) for v, d in json.loads(text)["maps"].items()}


def _file(state: Storage, version: int) -> str:
    return state.join("spaces", f"model_version={int(version)}.json")


def write_maps(state: Storage, version: int, maps: dict[int, LatentMap]) -> None:
    """Record a version's backward maps (an empty record for a first version: it maps nowhere)."""
    state.write_text(_file(state, version), to_json(maps))


def read_maps(state: Storage, version: int) -> dict[int, LatentMap]:
    """A version's backward maps; none for a version trained without a champion or before maps existed."""
    try:
        return from_json(state.read_text(_file(state, version)))
    except FileNotFoundError:
        return {}


def map_to(maps: dict[int, LatentMap], version: int, target: int) -> LatentMap | None:
    """The map that reads ``version``'s latents in ``target``'s space (None: its own space), or a refusal
    naming both versions."""
    if target == version:
        return None
    if target > version:
        raise FeatureVersionError(f"model version {version} cannot be read in the space of version {target}: "
                                  "maps go backward only, from a version to the versions before it")
    if target not in maps:
        reach = sorted(maps, reverse=True)
        raise FeatureVersionError(f"model version {version} has no map to version {target}'s latent space; it maps to "
                                  f"{reach or 'no earlier version'} (a version maps to the champion it was trained "
                                  "beside and, through it, to that champion's own)")
    return maps[target]


def mapped(m: LatentMap, source: list[str]) -> list[pl.Expr]:
    """Expressions that read the latent columns ``source`` (in order) as the target space's latents."""
    return [pl.sum_horizontal([pl.col(c) * np.float32(w) for c, w in zip(source, row)]).add(np.float32(b))
            .cast(pl.Float32).alias(name)
            for name, row, b in zip(latent_names(m.target_dim), m.weight, m.bias)]
