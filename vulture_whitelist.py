"""What vulture cannot see being used: framework entry points, attributes set for a library, public API.

Run from the repository root:

    vulture maskgen unmask vulture_whitelist.py --min-confidence 60

vulture only reads this file (it is never imported, nor run) and matches names, not their owners: each
entry below says what uses it. A name that is dead for real is removed from the code, not listed here.
"""

from maskgen import build, compose, face_points, source
from maskgen import cli as maskgen_cli
from unmask import cli as unmask_cli
from unmask import metrics
from unmask.evaluation import baselines
from unmask.metrics import fid_inception

anything = object  # stands for any owner: vulture matches attribute names whatever they belong to

_ = [  # called by a framework
    maskgen_cli.preview,  # click: `maskgen preview`
    unmask_cli.weights_fetch,  # click: `unmask weights fetch`
    unmask_cli.weights_check,  # click: `unmask weights check`
    baselines.telea,  # the inpainting registry: @register("telea")
    baselines.navier_stokes,  # the inpainting registry: @register("ns")
    anything.__getattr__,  # PEP 562 module hooks: maskgen/__init__.py's lazy exports
    anything.__dir__,
]

_ = [  # attributes set for a library to read
    anything.writeable,  # numpy: array.flags.writeable = False (read-only arrays)
    anything.show_default,  # click.Option, in maskgen.clitools.DataclassDefault
    anything.human_readable_name,  # click.Parameter's, overridden in maskgen.clitools.DeprecatedOption
    anything.mtime, anything.uname, anything.gname,  # tarfile.TarInfo of the shards' members (maskgen.shard)
    anything.MAX_IMAGE_PIXELS,  # PIL.Image's decompression-bomb limit (maskgen.source)
    anything.benchmark,  # torch.backends.cudnn.benchmark (unmask.training.runtime)
    anything.fc,  # the FID Inception's classifier: never run, present so that the checkpoint loads strictly
]

_ = [  # public API used outside the packages, and fields read through vars()
    compose.image_to_triplets,  # the library example of docs/maskgen/building.md
    source.decode_name,  # docs: a shard key back to its file name
    unmask_cli.train_config,  # pipelines/exp.py
    fid_inception.FID_WEIGHTS_NAME,  # the cache's file name (tests/unmask/metrics/test_fid.py)
    build.BuildResult.landmarks_mismatched,  # a build's count of mismatched landmark rows (tests/reliability)
    compose.SampleMeta.camera_noise,  # sample metadata, written through vars()
    compose.SampleMeta.camera_blur,
    compose.SampleMeta.camera_jpeg,
    compose.SampleMeta.camera_cast,
    face_points.MOUTH,  # the 68-point scheme's named ranges are complete (docs/architecture.md)
    metrics.Metric.unit,  # registry metadata for callers ("dB"; tests/unmask/metrics/test_registry.py)
]
