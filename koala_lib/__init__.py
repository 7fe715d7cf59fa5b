"""koala: Deep Koalarization, taught and reproduced (the course's library).

Layers, each importing only from those before it:

* ``environment``: the environment variables, folders and GPUs (the one place they are read);
* ``color`` (Lab), ``quantize`` (a,b as colour bins), ``metrics`` (PSNR, SSIM,
  colourfulness), ``viz`` (figures);
* ``data``: the portrait data, from files to training batches (a package, one module a step);
* ``model`` (the colorizer), ``losses`` (the objective), ``features`` (the frozen classifier),
  ``torch_weights`` (reading .pth files without PyTorch);
* ``train``: training, checkpoints, resume;
* ``evaluate`` (predictions, baselines, the metric table), ``colorize`` (full-resolution
  inference, trained-model files) and ``colorize_video`` (videos, with their sound);
* ``experiments`` (the report's Table 1 and section 4.3) and ``studies`` (settings compared
  over seeds, notebook 10);
* ``course``: profiles and their settings, the course's folders, recorded results.

``python -m koala_lib colorize`` and ``python -m koala_lib evaluate`` are the command line.
"""

__version__ = "0.1.0"
