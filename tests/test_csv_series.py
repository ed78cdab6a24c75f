"""CSV series read by pandas: dates in the formats real files use, the date column never a feature,
missing values named by line and column or filled by data.fill."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.series import CSVSeries
from tests.helpers.sequences import plain_csv
from zoo.errors import UserError


def write(tmp_path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def slashed_dates(n: int = 60) -> str:
    """The date style of a widely used public benchmark file: 1990/1/1 0:00, hourly, no zero padding."""
    rows = ["date,load,OT"]
    for i in range(n):
        day, hour = divmod(i, 24)
        rows.append(f"1990/1/{day + 1} {hour}:00,{i % 7}.5,{i}")
    return "\n".join(rows) + "\n"


def test_dates_written_1990_1_1_0_00_are_read_and_rows_put_in_date_order(tmp_path):
    lines = slashed_dates().splitlines()
    path = write(tmp_path, "\n".join([lines[0], *lines[:0:-1]]) + "\n")  # newest first
    dm = CSVSeries(path=path, lookback=8, horizon=4)
    dm.setup()
    assert dm.spec.channel_names == ("load", "OT")
    # Row order restored: OT counts up 0, 1, 2, ... in date order.
    ot = dm.bases["train"][:, 1] * dm.spec.channel_std[1] + dm.spec.channel_mean[1]
    assert np.allclose(ot.numpy(), np.arange(len(ot)), atol=1e-3)


def test_a_date_format_of_ones_own(tmp_path):
    rows = ["when,OT"] + [f"2020y{m:02d}m{d:02d}d,{d + m}" for m in (1, 2) for d in range(1, 29)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"has '2020y01m01d' \(line 2\), which is not a date pandas recognises"):
        CSVSeries(path=path, date_column="when", lookback=4, horizon=2).setup()
    dm = CSVSeries(path=path, date_column="when", date_format="%Yy%mm%dd", lookback=4, horizon=2)
    dm.setup()
    assert dm.spec.channel_names == ("OT",)
    with pytest.raises(UserError, match=r"'2020y31m01d' \(line 2\), is not a date in data.date_format=%Yy%mm%dd"):
        CSVSeries(
            path=write(tmp_path, "when,OT\n2020y31m01d,1\n", "other.csv"),
            date_column="when",
            date_format="%Yy%mm%dd",
            lookback=1,
            horizon=1,
        ).setup()


def test_without_a_date_column_dates_are_still_not_features(tmp_path):
    dm = CSVSeries(path=write(tmp_path, slashed_dates()), date_column=None, lookback=8, horizon=4)
    dm.setup()
    assert dm.spec.channel_names == ("load", "OT")  # not 'date', and no "not numeric" error


def with_gaps(text: str) -> str:
    lines = text.splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ","  # line 6: OT missing
    lines[9] = lines[9].split(",")[0] + ",NA,NA"  # line 10: both missing
    return "\n".join(lines) + "\n"


def test_missing_values_are_named_by_line_and_column(tmp_path):
    path = write(tmp_path, with_gaps(slashed_dates()))
    with pytest.raises(UserError) as err:
        CSVSeries(path=path, lookback=8, horizon=4).setup()
    assert str(err.value) == (
        f"column 'OT' of {path} has no value at line 6 and 2 more missing values; fill the gaps with "
        f"data.fill=ffill (the last value before), interpolate, zero or drop (leave those rows out), or fix the file."
    )


@pytest.mark.parametrize(
    "fill, rows, line_6_ot, line_10_load",
    [("ffill", 60, 3.0, 0.5), ("interpolate", 60, 4.0, 1.5), ("zero", 60, 0.0, 0.0), ("drop", 58, None, None)],
)
def test_fill_policies(fill, rows, line_6_ot, line_10_load, tmp_path):
    dm = CSVSeries(path=write(tmp_path, with_gaps(slashed_dates())), fill=fill, lookback=8, horizon=4)
    values, names, _, _ = dm.load()
    assert names == ["load", "OT"] and len(values) == rows
    if line_6_ot is not None:
        assert values[4, 1] == line_6_ot  # line 6 is data row 4: OT was 4
        assert values[8, 0] == line_10_load  # line 10 is data row 8: load was 8 % 7 + .5
    else:
        assert not np.isnan(values).any() and 4 not in values[:, 1] and 8 not in values[:, 1]


def test_a_bad_fill_policy_is_one_sentence():
    with pytest.raises(UserError, match=r"^data.fill must be null \(missing values are an error\) or one of ffill"):
        CSVSeries(path="x.csv", fill="mean")


def test_an_ett_style_file_reads_as_before(tmp_path):
    dm = CSVSeries(path=write(tmp_path, plain_csv(200)), lookback=10, horizon=5)
    dm.setup()
    assert dm.spec.channel_names == ("load", "temp", "OT") and dm.spec.shape == (10, 3)
