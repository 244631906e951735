"""The image processor saved beside every model."""

from __future__ import annotations

from vitinspect.model.vit import InputSpec, image_processor


def test_the_image_processor_resizes_rescales_and_normalises_by_the_spec():
    proc = image_processor(InputSpec(48, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)))
    assert proc.size == {"height": 48, "width": 48}
    assert list(proc.image_mean) == [0.1, 0.2, 0.3] and list(proc.image_std) == [0.4, 0.5, 0.6]
    assert proc.do_resize and proc.do_rescale and proc.do_normalize
