"""NWB export: trials of an experiment as one Neurodata Without Borders file (pynwb).

What goes where in the file (NWB 2.x, read with ``pynwb.NWBHDF5IO``):

- ``general/devices/<device>`` and ``general/optophysiology/ImagingPlane`` (an
  OpticalChannel; ``imaging_rate`` = the trials' ``uns["fs"]``; indicator, location and
  wavelengths from the arguments, else the experiment's metadata, else "unknown"/NaN).
- ``processing/ophys/ImageSegmentation/PlaneSegmentation``: one row per ROI, its ``id``
  the stored ROI ID (Suite2p's index); ``pixel_mask`` = (x, y, weight) = (Suite2p
  ``ypix``, ``xpix``, ``lam``). NWB's x is the first axis of its images (``image_mask``
  is (roi, x, y), GrayscaleImage (x, y)), so x is the field of view's row: the summary
  images are stored as Suite2p has them, (Ly, Lx), and ``image[x, y] = weight`` rebuilds a
  mask on them. Suite2p's own NWB writer and neuroconv do the same. (pynwb's
  ``PlaneSegmentation.pixel_to_image`` indexes ``[y, x]``: it returns the transpose.)
  Every obs column (``iscell``, ``iscell_prob``, Suite2p's stat fields) is a column; so
  is every other obsm entry (2-D arrays, ragged arrays as indexed columns). ROI names
  that are not integers: ids are positions and a ``roi_name`` column holds the names; a
  trial without ypix/xpix/lam gets empty pixel masks (NWB requires the column).
- ``processing/ophys/Fluorescence/F`` (X) and ``Fluorescence/<layer>`` for each layer,
  ``processing/ophys/DfOverF/<layer>`` for dF/F layers (made by ``normalize_dff``, or
  named dFF): RoiResponseSeries of (time, ROI), the transpose of zstore's (ROI, frame).
- ``processing/ophys/SummaryImages``: meanImg, meanImgE, max_proj, Vcorr as the trials'
  ``uns`` give them (GrayscaleImage, (Ly, Lx) as above).
- ``acquisition/<channel>``: each var column (the paq channels sampled at each frame's
  clock edge) as a TimeSeries, with its unit from ``uns["paq"]``.
- ``intervals/trials``: one row per trial (start_time = its first frame's time,
  stop_time = its last frame's + 1/fs, ``trial_id``, ``first_frame``: its first row in
  the series, ``n_frames``).

Times: var ``time`` (seconds from the session's start, which ``session_start_time``
names). Several trials are concatenated along time into one series per matrix (their
session times must increase from trial to trial, as ingested trials' do); the trials
table says which rows belong to which trial. Series are written with ``rate`` and
``starting_time`` when the frame times are a regular grid (to a microsecond), else with
``timestamps`` (paq frame-clock times jitter by a paq sample); every series after the
first links to the first one's timestamps.

Streaming: each series is written by an hdmf GenericDataChunkIterator whose buffers are
a block of frames x a block of ROIs, aligned to the store's inner chunks and bounded to
~16 MB, so memory does not grow with the trial. The file is written under a temporary
name in the target's folder (``.<name>.<random>.partial.nwb``, removed on errors; a
killed process leaves it, never a half file under the target's name), fsynced, and
appears under its own name only when complete; an existing file is never replaced
(:mod:`zstore.publish`, shared with the anndata exports).
"""

from .file import export_nwb

__all__ = ["export_nwb"]
