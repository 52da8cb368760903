"""``relationfield doctor``: what this machine has and lacks for each stage, checked offline.

It reports the versions of the packages the stages need (from their metadata; nothing is imported just for
a version), CUDA and tinycudann, which weights are in the local caches (a given SAM checkpoint, the text
encoder, CLIP, the offline MiniLM, LPIPS's AlexNet) and whether ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``
are set (never their values), then one verdict per stage: masks, relations, embed, train, viewer/export.
Nothing is downloaded and no server is contacted; torch (for CUDA), tinycudann (to see that it loads) and
open_clip (its table of pretrained tags) are the only heavy imports.

Modules:

* :mod:`relationfield.doctor.report` - :class:`Check`, :class:`Verdict` and the report as text or JSON
* :mod:`relationfield.doctor.system` - packages, the nerfstudio plugin, CUDA and tcnn, the environment
* :mod:`relationfield.doctor.weights` - the weights in the local caches
* :mod:`relationfield.doctor.verdicts` - one verdict per stage
* :mod:`relationfield.doctor.checkup` - :func:`run_doctor`: all checks, then the verdicts
"""

from relationfield.doctor.checkup import run_doctor
from relationfield.doctor.report import Check, DoctorReport, Verdict

__all__ = ["Check", "DoctorReport", "Verdict", "run_doctor"]
