"""Converters from public datasets' scans (3RScan with 3DSSG, ScanNet++, Replica) to captures with ground truth.

* :mod:`relationfield.convert.capture` - the capture layout every converter writes (:class:`CaptureWriter`)
* :mod:`relationfield.convert.rscan` - 3RScan scans and their 3DSSG relationships (``relationfield convert 3rscan``)
* :mod:`relationfield.convert.scannetpp` - ScanNet++ scenes (``relationfield convert scannetpp``)
* :mod:`relationfield.convert.replica` - Replica in NICE-SLAM's layout (``relationfield convert replica``)
"""
