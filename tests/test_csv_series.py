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


# ---- no silent wrong result from a user's file (issue 26) -------------------------------------


def _hourly(fmt: str, n: int = 72, start: str = "2016-12-30 00:00", zone=None) -> list[tuple[str, int]]:
    """(date text, OT) for ``n`` hours from ``start``: OT counts the hours, so the true order is OT's."""
    import pandas as pd

    stamps = pd.date_range(start, periods=n, freq="h")
    return [(t.strftime(fmt) + (zone(t) if zone else ""), i) for i, t in enumerate(stamps)]


def _ot_in_order(path: str, **kwargs) -> np.ndarray:
    dm = CSVSeries(path=path, lookback=4, horizon=2, **kwargs)
    dm.setup()
    return np.concatenate(
        [(dm.bases[split][:, -1] * dm.spec.channel_std[-1] + dm.spec.channel_mean[-1]).numpy() for split in ("train",)]
    )


@pytest.mark.parametrize("fmt", ["%d/%m/%Y %H:%M", "%d.%m.%Y %H:%M", "%d-%m-%Y %H:%M", "%m/%d/%Y %H:%M"])
@pytest.mark.parametrize("order", ["as written", "newest first"])
def test_dates_written_day_or_month_first_are_read_in_their_true_order(tmp_path, fmt, order):
    """Around a new year (days above 12): each way of writing the date is told from the values."""
    rows = _hourly(fmt)
    if order == "newest first":
        rows = rows[::-1]
    path = write(tmp_path, "date,OT\n" + "".join(f"{d},{v}\n" for d, v in rows))
    ot = _ot_in_order(path)
    assert np.allclose(ot, np.arange(len(ot)), atol=1e-3), ot[:10]


def test_dates_that_read_both_ways_ask_for_the_format(tmp_path):
    """Only days up to 12: 01/02/2016 is 1 February or 2 January; asked, never guessed."""
    rows = [
        f"{d:02d}/{m:02d}/2016 00:00,{i}" for i, (m, d) in enumerate((m, d) for m in range(1, 13) for d in (1, 5, 9))
    ]
    path = write(tmp_path, "date,OT\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"has dates that read day first and month first alike .* data.date_format"):
        CSVSeries(path=path, lookback=4, horizon=2).setup()
    ot = _ot_in_order(path, date_format="%d/%m/%Y %H:%M")
    assert np.allclose(ot, np.arange(len(ot)), atol=1e-3)


def test_dates_with_mixed_time_zones_are_read_as_instants(tmp_path):
    """Across the end of summer time the local clock goes back; the offsets give the true order."""
    import pandas as pd

    stamps = pd.date_range("2016-10-29 22:00", periods=48, freq="30min", tz="UTC").tz_convert("Europe/Berlin")
    rows = [f"{t.strftime('%Y-%m-%d %H:%M%z')[:-2]}:{t.strftime('%z')[-2:]},{i}" for i, t in enumerate(stamps)]
    assert len({r[16:22] for r in rows}) == 2  # two offsets: +02:00, +01:00
    path = write(tmp_path, "date,OT\n" + "\n".join(rows[::-1]) + "\n")
    ot = _ot_in_order(path)
    assert np.allclose(ot, np.arange(len(ot)), atol=1e-3), ot[:10]
    mixed = write(
        tmp_path, "date,OT\n" + "\n".join([*rows[:10], "2016-10-30 09:00,99", *rows[10:]]) + "\n", "mixed.csv"
    )
    with pytest.raises(
        UserError, match=r"mixes dates with a time zone .* and without one \('2016-10-30 09:00', line 12\)"
    ):
        CSVSeries(path=mixed, lookback=4, horizon=2).setup()


@pytest.mark.parametrize("header", ["date,OT,load,OT", "date, OT,load,OT ", "date,load,load,OT"])
def test_duplicate_column_names_are_refused(tmp_path, header):
    rows = "".join(f"2016-01-01 {h:02d}:00,{h},{h},{h}\n" for h in range(24))
    path = write(tmp_path, header + "\n" + rows)
    name = "load" if "load,load" in header else "OT"
    with pytest.raises(UserError, match=f"names two columns '{name}' \\(columns"):
        CSVSeries(path=path, lookback=4, horizon=2).setup()


@pytest.mark.parametrize(
    "value, says",
    [
        ("1e39", r"has '1e39' at line 5, beyond what a float32 holds"),
        ("-4e38", r"has '-4e38' at line 5, beyond what a float32 holds"),
        ("inf", r"is not numeric \(line 5 has 'inf'\)"),
        ("12\x003", r"has a NUL byte at line 5, column 'OT'"),
    ],
    ids=["1e39", "-4e38", "inf", "NUL"],
)
def test_values_no_float32_holds_and_binary_bytes_are_refused_naming_line_and_column(tmp_path, value, says):
    rows = [f"2016-01-01 {h:02d}:00,{h},{h}" for h in range(24)]
    rows[3] = f"2016-01-01 03:00,3,{value}"
    path = tmp_path / "data.csv"
    path.write_bytes(("date,load,OT\n" + "\n".join(rows) + "\n").encode())
    with pytest.raises(UserError, match=says) as e:
        CSVSeries(path=str(path), lookback=4, horizon=2).setup()
    assert "column 'OT'" in str(e.value) or "column 'OT' of" in str(e.value)
