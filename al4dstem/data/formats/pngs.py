"""A folder of the paper's per-position images ``X_Y*.png`` (``X`` = scan column, ``Y`` = scan row)."""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, make_dataset, register


def open_png_folder(request: Request):
    from al4dstem.data.png_folder import PngFolder

    stack = PngFolder(request.path)
    return make_dataset(stack, request, FORMAT, size=stack.nbytes_on_disk)


FORMAT = register(Format(
    name="png-folder", title="folder of X_Y*.png patterns", extensions=(), open=open_png_folder, folder=True,
    lazy="lazy (one image per read)", reader="Pillow",
))
