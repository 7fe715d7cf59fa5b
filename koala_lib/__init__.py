"""koala: Deep Koalarization, taught and reproduced (the course's library).

Modules, one job each: ``color`` (Lab), ``data`` (portraits), ``viz`` (figures),
``profiles`` (run profiles, environment check), ``outputs`` (where results go),
``model`` (the colorizer), ``features`` (the frozen classifier), ``torch_weights``
(reading .pth files without PyTorch), ``cache`` (embeddings), ``losses`` (the objective).
"""

__version__ = "0.1.0"
