"""koala: Deep Koalarization, taught and reproduced (the course's library).

Modules, one job each: ``color`` (Lab), ``data`` (portraits), ``viz`` (figures),
``profiles`` (run profiles, environment check), ``outputs`` (where results go),
``model`` (the colorizer), ``features`` (the frozen classifier), ``torch_weights``
(reading .pth files without PyTorch), ``cache`` (embeddings), ``losses`` (the objective),
``cleaning``, ``split``, ``prepare``, ``feeder``, ``video``, ``download`` (the data set),
``train`` (training, checkpoints, resume), ``metrics`` (PSNR, SSIM, colourfulness),
``experiments`` (the report's Table 1 and section 4.3), ``colorize`` (full-resolution
inference, trained-model files). ``python -m koala_lib colorize`` is the command line.
"""

__version__ = "0.1.0"
