"""Reading and writing the datasets' files, with checks that name the file when something is wrong.

Everything here is plain numpy/PIL/scipy.io; Caffe is not needed.
"""
import io
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from caffe_fcn.cli import BadInput
from caffe_fcn.files import write_atomic


class DatasetError(BadInput):
    """Missing or bad dataset files; the message names the file and what was expected."""


def palette(n=256):
    """The PASCAL VOC colormap: class i gets the color made from the bits of i, spread over R, G, B."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[i] = r, g, b
    return cmap


MAX_PIXELS = 4096 * 4096  # the datasets' images are 500 x 500 at most (NYUDv2 640 x 480)
EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 as stored, 2 to 8 turned and/or flipped
SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N')
JPEG_MASK = 'its compression turns class indices into noise, whatever its name; export the masks as PNG'


def _open_image(path, modes, what, hint=''):
    """Open and fully decode an image (so a truncated file fails here), checking its mode."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing {what}: {path}")
    try:
        im = Image.open(path)
        if im.width * im.height > MAX_PIXELS:  # checked before decoding: Caffe would abort on the blobs anyway
            raise DatasetError(f"{what} {path} is {im.width}x{im.height}: larger than any FCN dataset's images "
                               f"({MAX_PIXELS >> 20} megapixels at most here); scale it down")
        im.load()
    except Image.DecompressionBombError as e:  # not an OSError: Pillow's guard against huge images
        raise DatasetError(f"{what} {path} is too large to read safely: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"unreadable or truncated {what} {path}: {e}") from e
    if modes is not None and im.mode not in modes:
        raise DatasetError(f"{what} {path} has image mode {im.mode!r}, expected one of {sorted(modes)}{hint}")
    return im


def read_rgb(path):
    """An RGB image as an H x W x 3 uint8 array (a declared dataset's published files, HHA's three channels)."""
    return np.array(_open_image(path, {'RGB'}, 'RGB image', ': convert it to RGB'))


def read_photo(path):
    """A photo of a folder dataset in any mode, as photo_rgb reads it."""
    return photo_rgb(_open_image(path, None, 'image'), path)


def photo_rgb(im, name):
    """A photo in any PIL mode as H x W x 3 uint8 RGB, by the one rule of fcn-data import, the folder dataset
    reader and fcn-infer: 16-bit values scaled by the bit depth (value >> 8: one scale for every file, as a
    viewer shows them), never clipped; alpha dropped (the colours as stored); the rest as Pillow converts
    them. 32-bit integers and floats have no fixed scale to 8 bits: refused."""
    if im.mode in SIXTEEN_BIT or im.mode == 'I':
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 0xffff):
            raise DatasetError(f"image {name} holds 32-bit values from {values.min()} to {values.max()}: a photo "
                               "has 8 or 16 bits a channel; save it as an 8-bit image")
        return np.repeat((values >> 8).astype(np.uint8)[..., np.newaxis], 3, axis=2)
    if im.mode == 'F':
        raise DatasetError(f"image {name} holds floating-point values: a photo has 8 or 16 bits a channel; save "
                           "it as an 8-bit image")
    try:
        return np.asarray(im.convert('RGB'))
    except (ValueError, OSError) as e:
        raise DatasetError(f"image {name} has image mode {im.mode!r}, which Pillow cannot turn into RGB ({e}); "
                           "save it as an RGB image") from None


def exif_turn(im):
    """The image's EXIF orientation, 2 to 8 where it turns or flips it; 1 (as stored) without one, or for 0
    (undefined), invalid values and a malformed EXIF block, as viewers show those."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (TypeError, ValueError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def read_gray16(path):
    """A single-channel (8- or 16-bit) image, e.g. NYUDv2 depth in millimetres, as float32."""
    return np.array(_open_image(path, {'I;16', 'I;16B', 'I', 'L'}, 'single-channel image'), dtype=np.float32)


def read_label_png(path):
    """A class-index PNG (palette or grayscale, as VOC's SegmentationClass) as an H x W uint8 array."""
    im = _open_image(path, {'P', 'L'}, 'label PNG',
                     ': a label holds one class index per pixel (palette or grayscale PNG), not a color rendering')
    if im.format == 'JPEG':
        raise DatasetError(f"label {path} is JPEG data: {JPEG_MASK}")
    return np.array(im, dtype=np.uint8)


def label_image(label):
    """An H x W class map as a palette ('P') image in the VOC colors, as write_label_png saves it."""
    label = np.asarray(label)
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"a label PNG needs a 2-D map of values 0..255, got shape {label.shape}")
    im = Image.fromarray(label.astype(np.uint8), mode='P')
    im.putpalette(palette().ravel().tolist())
    return im


def write_label_png(path, label):
    """Write an H x W class map as a palette PNG with the VOC colors (the SegmentationClass format), atomically:
    a full disk leaves the old file, never a truncated one."""
    buffer = io.BytesIO()
    label_image(label).save(buffer, format='PNG')
    return write_atomic(path, buffer.getvalue())


def read_mat(path, variable):
    """One variable of a MATLAB .mat file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing .mat file: {path}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, ... on corrupt files
        raise DatasetError(f"unreadable .mat file {path}: {e}") from e
    if variable not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise DatasetError(f"{path} has no variable {variable!r} (found {found})")
    return mat[variable]


def read_sbdd_cls(path):
    """The class map of an SBD cls/*.mat file: struct GTcls, field Segmentation."""
    gt = read_mat(path, 'GTcls')
    try:
        return np.asarray(gt[0]['Segmentation'][0])
    except (ValueError, IndexError, KeyError) as e:
        raise DatasetError(f"{path}: GTcls has no field 'Segmentation' (not an SBD cls file?)") from e


def read_split(path, layout):
    """The ids listed in a split file, one per line; `layout` explains what was expected if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing split file {path}\n{layout}")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"split file {path} lists no images")
    strange = next((id_ for id_ in ids if not is_plain_name(id_)), None)
    if strange is not None:
        raise DatasetError(f"split file {path} lists {strange!r}: an image id is a plain file name (no '/', not "
                           "starting with '.')")
    return ids


def is_plain_name(name):
    """A file name that stays inside its folder: no separator, not '.' or '..' or hidden."""
    return bool(name) and '/' not in name and '\\' not in name and not name.startswith('.')


def read_class_list(path):
    """A PASCAL-Context class list ('12: name' per line) as {number: name with spaces removed}."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing class list {path}")
    names = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        number, sep, name = line.partition(':')
        if not sep or not number.strip().isdigit():
            raise DatasetError(f"{path} line {n}: expected 'NUMBER: name', got {line!r}")
        names[int(number)] = name.strip().replace(' ', '')
    return names


def check_label(label, n_classes, path, void=255):
    """Labels must be class indices 0..n_classes-1 or void."""
    bad = (label >= n_classes) & (label != void)
    if bad.any():
        values = sorted(set(np.unique(label[bad]).tolist()))[:10]
        raise DatasetError(f"{path}: label values {values} are outside the {n_classes} classes "
                           f"(0..{n_classes - 1}) and void {void}")


def check_raw_values(raw, allowed, path):
    """Raw label values (before any shift) must be among `allowed`."""
    bad = ~np.isin(raw, list(allowed))
    if bad.any():
        values = sorted(set(np.unique(raw[bad]).tolist()))[:10]
        raise DatasetError(f"{path}: label values {values} are not valid here (allowed {min(allowed)}..{max(allowed)})")


def check_same_size(image, label, image_path, label_path):
    """The label map must cover the image pixel for pixel, with one class per pixel (every axis checked: an
    H x W x 3 label would pass a check of the first two and then abort Caffe's loss)."""
    if label.ndim != 2:
        raise DatasetError(f"label {label_path} has shape {'x'.join(map(str, label.shape))}: a label holds one class "
                           "index per pixel, an H x W array")
    if image.shape[:2] != label.shape[:2]:
        raise DatasetError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} but its label {label_path} "
                           f"is {label.shape[0]}x{label.shape[1]}")
