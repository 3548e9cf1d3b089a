"""A deploy net and what goes into it, shared by inference, scoring's engines and the export's checks: images
read and checked (read_image), the net loaded with checked weights (load_deploy_net), an image's blobs sized
before Caffe allocates them (check_fits), and one checked forward pass (forward). Nothing here imports the
tools above it (solvers.infer, solvers.engines, export), so they all import it."""
import io
import os
import stat
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from caffe_fcn import cli
from caffe_fcn.datalayers.io import DatasetError, exif_turn, photo_rgb
from solvers.score import check_outputs
from solvers.tiles import INT_MAX

MAX_PIPED_BYTES = 1 << 28  # an image read from a pipe is held whole: 256 MB, past any photo a net takes
PIPED = {}  # path -> the bytes read from a pipe: it is read once, and read_image is called for the header first


def image_source(path):
    """What Image.open reads for `path`: the path itself, or for a FIFO (/dev/stdin from a pipe) its bytes,
    read once, whole, up to MAX_PIPED_BYTES. A folder or a device is refused (a device may never end)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path  # missing or unreadable: Image.open says which
    if stat.S_ISREG(mode):
        return path
    if not stat.S_ISFIFO(mode):
        raise ValueError(f'{path} is not a regular file or a pipe (a folder, device or socket): give an image file')
    key = os.path.abspath(path)
    if key not in PIPED:
        with open(path, 'rb') as pipe:
            data = pipe.read(MAX_PIPED_BYTES + 1)
        if len(data) > MAX_PIPED_BYTES:
            raise ValueError(f'{path}: the pipe holds more than {MAX_PIPED_BYTES} bytes, more than any image a '
                             'net takes')
        if not data:
            raise ValueError(f'{path} is empty: nothing was written to the pipe')
        PIPED[key] = data
    return io.BytesIO(PIPED[key])


def read_image(path, decode=True):
    """H x W x 3 uint8 RGB by the photo rule of the data layers and fcn-data import (io.photo_rgb; with `decode`
    False: only checked, from the file's header), or a clear error for a missing or unreadable file."""
    try:
        with Image.open(image_source(path)) as im:
            if decode and exif_turn(im) != 1:
                tqdm.write(f'note: {path} has an EXIF orientation; it is segmented as stored, not as a viewer turns '
                           'it (as the data layers and the reference read images)', file=sys.stderr)
            return photo_rgb(im, path) if decode else im.size
    except DatasetError as err:  # a mode with no photo in it; the callers take ValueErrors (--keep-going)
        raise ValueError(str(err)) from None
    except FileNotFoundError:
        raise ValueError(f'image {path} not found') from None
    except Image.DecompressionBombError as err:  # not an OSError: Pillow's guard against huge images
        raise ValueError(f'{path} is too large to read safely: {err}') from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f'{path} is not an image Pillow can read ({err})') from None


def load_deploy_net(model, weights, width=1.0):
    """(the model's deploy net with trained weights, its NetParameter)."""
    import netgen
    import surgery

    if not Path(weights).is_file():
        raise cli.BadInput(f'weights {weights} not found: pass a .caffemodel written by training')
    proto = netgen.net(model, 'deploy', width)
    net = surgery.instantiate(proto)
    surgery.load_weights(net, str(weights), model=model.name)
    return net, proto


def check_fits(proto, rgb, path):
    """Refuse, before Caffe allocates anything, an image whose blobs in this net would pass Caffe's limit of
    2**31 - 1 values per blob (Caffe aborts) or the memory available now."""
    from netgen.geometry import blob_sizes

    sizes = blob_sizes(proto, *rgb.shape[:2])
    blob, largest = max(sizes.items(), key=lambda item: item[1])
    if largest > INT_MAX:
        raise cli.BadInput(f'{path}: a {rgb.shape[1]}x{rgb.shape[0]} image is too large for this net: its blob '
                           f'{blob} would hold {largest} values, over Caffe\'s limit of {INT_MAX}; scale it down')
    needed, available = 4 * sum(sizes.values()), os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    if needed > available:
        raise cli.BadInput(f'{path}: a {rgb.shape[1]}x{rgb.shape[0]} image needs about {needed >> 20} MB in this '
                           f'net, {available >> 20} MB are free; scale it down')


def forward(net, inputs):
    """One forward pass of the net, reshaped to the inputs {input top: C x H x W}; NotFinite for NaN or infinite
    outputs, and whether they are constant."""
    for top, array in inputs.items():
        net.blobs[top].reshape(1, *array.shape)
    net.reshape()
    # Caffe aborts on a layer whose output vanishes (an image smaller than the net's pooling allows).
    empty = [name for name, blob in net.blobs.items() if blob.count == 0]
    if empty:
        h, w = next(iter(inputs.values())).shape[1:]
        raise ValueError(f'a {w}x{h} image is too small for this net: {empty[0]} comes out empty; use a larger image')
    for top, array in inputs.items():
        net.blobs[top].data[0] = array
    net.forward()
    return check_outputs(net, list(net.outputs))
