"""Small generated chest DICOMs for the server tests (pydicom `set_pixel_data`)."""

from __future__ import annotations


def chest_dicom(view_position: str = "PA", burned_in: str | None = "NO") -> bytes:
    """A small DX chest DICOM with a patient name (`burned_in` None: the tag is absent)."""
    import io

    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", view_position
    ds.PatientName, ds.PatientID = "Roe^Ann", "MRN-7788"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    yy, xx = np.mgrid[0:128, 0:128]
    ds.set_pixel_data(((yy * 13 + xx * 7) % 4096).astype(np.uint16), "MONOCHROME2", 12)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
