"""Datasets: on-disk layouts (VOCASET, BIWI, synthetic), standard splits, safe sample loading,
and padded batching. Entry point: :func:`avguide.data.layouts.open_dataset`."""
