//! A finished Parquet file as an Iceberg data file: its partition (tag and
//! period hour, from the manifest), and the column metrics engines prune
//! with (sizes, value and null counts, bounds of `time`, `tag`, `period`
//! and the declared columns), read from the file's own footer. Nothing is
//! encoded again.

use std::collections::HashMap;
use std::path::Path;

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, Schema, Struct,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use crate::outbox::Manifest;

/// Why a file cannot be described to the table.
#[derive(Debug, thiserror::Error)]
pub(super) enum DataFileError {
    #[error("cannot read the footer of {path}: {message}")]
    Footer { path: String, message: String },
    #[error("{0}")]
    Iceberg(String),
}

/// Microseconds in an hour, for the `hour(period)` partition value.
const HOUR_US: i64 = 3_600_000_000;

/// The data file at `location` (its URI in the warehouse), read from the
/// local copy at `path`; `schema` is the table's, `per_route` whether the
/// partition spec has no `tag`.
///
/// # Errors
/// The footer cannot be read, or the metrics cannot be expressed.
pub(super) fn describe(
    path: &Path,
    location: &str,
    manifest: &Manifest,
    schema: &Schema,
    per_route: bool,
    spec_id: i32,
) -> Result<DataFile, DataFileError> {
    let footer = |message: String| DataFileError::Footer {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| footer(e.to_string()))?;
    let size = file.metadata().map_err(|e| footer(e.to_string()))?.len();
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| footer(e.to_string()))?;
    let metrics = Metrics::of(&meta, schema);
    let hour = manifest
        .period_start
        .saturating_mul(1_000_000)
        .div_euclid(HOUR_US) as i32;
    let mut partition = Vec::new();
    if !per_route {
        partition.push(Some(Literal::string(&manifest.group)));
    }
    partition.push(Some(Literal::int(hour)));
    let mut b = DataFileBuilder::default();
    b.content(DataContentType::Data)
        .file_path(location.to_string())
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::from_iter(partition))
        .partition_spec_id(spec_id)
        .record_count(meta.file_metadata().num_rows().max(0) as u64)
        .file_size_in_bytes(size)
        .column_sizes(metrics.sizes)
        .value_counts(metrics.values)
        .null_value_counts(metrics.nulls)
        .lower_bounds(metrics.lower)
        .upper_bounds(metrics.upper)
        .split_offsets(Some(metrics.splits));
    b.build().map_err(|e| DataFileError::Iceberg(e.to_string()))
}

/// Column metrics by Iceberg field id.
#[derive(Default)]
struct Metrics {
    sizes: HashMap<i32, u64>,
    values: HashMap<i32, u64>,
    nulls: HashMap<i32, u64>,
    lower: HashMap<i32, Datum>,
    upper: HashMap<i32, Datum>,
    splits: Vec<i64>,
}

impl Metrics {
    fn of(meta: &ParquetMetaData, schema: &Schema) -> Self {
        let mut m = Metrics::default();
        let columns = meta.file_metadata().schema_descr();
        // Field id of each leaf column, by the name the file gives it.
        let ids: Vec<Option<(i32, iceberg::spec::PrimitiveType)>> = (0..columns.num_columns())
            .map(|i| {
                let f = schema.field_by_name(columns.column(i).name())?;
                match f.field_type.as_ref() {
                    iceberg::spec::Type::Primitive(p) => Some((f.id, p.clone())),
                    _ => None,
                }
            })
            .collect();
        // Bounds are kept only while every row group has exact ones.
        let mut bounds_ok = vec![true; ids.len()];
        for rg in meta.row_groups() {
            let offset = rg.file_offset().unwrap_or_else(|| {
                rg.columns()
                    .iter()
                    .map(|c| c.dictionary_page_offset().unwrap_or(c.data_page_offset()))
                    .min()
                    .unwrap_or(0)
            });
            m.splits.push(offset);
            for (i, c) in rg.columns().iter().enumerate() {
                let Some((id, ty)) = ids.get(i).cloned().flatten() else {
                    continue;
                };
                *m.sizes.entry(id).or_default() += c.compressed_size().max(0) as u64;
                *m.values.entry(id).or_default() += c.num_values().max(0) as u64;
                let stats = c.statistics();
                match stats.and_then(|s| s.null_count_opt()) {
                    Some(n) => *m.nulls.entry(id).or_default() += n,
                    None => {
                        m.nulls.insert(id, u64::MAX);
                    }
                }
                let pair = stats.and_then(|s| bounds(s, &ty));
                match (pair, bounds_ok[i]) {
                    (Some((lo, hi)), true) => {
                        merge(&mut m.lower, id, lo, |a, b| b < a);
                        merge(&mut m.upper, id, hi, |a, b| b > a);
                    }
                    (None, _)
                        if rg.num_rows() > 0
                            && c.num_values() > 0
                            && !all_null(stats, c.num_values()) =>
                    {
                        bounds_ok[i] = false;
                    }
                    _ => {}
                }
            }
        }
        m.splits.sort_unstable();
        for (i, ok) in bounds_ok.iter().enumerate() {
            if let (false, Some((id, _))) = (ok, ids.get(i).cloned().flatten()) {
                m.lower.remove(&id);
                m.upper.remove(&id);
            }
        }
        // A null count not known for every row group is not known.
        m.nulls.retain(|_, n| *n != u64::MAX);
        m
    }
}

fn all_null(stats: Option<&Statistics>, values: i64) -> bool {
    stats
        .and_then(|s| s.null_count_opt())
        .is_some_and(|n| n as i64 >= values)
}

fn merge(
    map: &mut HashMap<i32, Datum>,
    id: i32,
    v: Datum,
    better: impl Fn(&Datum, &Datum) -> bool,
) {
    match map.get(&id) {
        Some(cur) if !better(cur, &v) => {}
        _ => {
            map.insert(id, v);
        }
    }
}

/// Exact lower and upper bounds of one column chunk, as the table's type.
/// Strings other than short exact ones (`record`, long values) get none.
fn bounds(s: &Statistics, ty: &iceberg::spec::PrimitiveType) -> Option<(Datum, Datum)> {
    use iceberg::spec::PrimitiveType as P;
    if !s.min_is_exact() || !s.max_is_exact() {
        return None;
    }
    match (s, ty) {
        (Statistics::Int64(v), P::Timestamptz) => Some((
            Datum::timestamptz_micros(*v.min_opt()?),
            Datum::timestamptz_micros(*v.max_opt()?),
        )),
        (Statistics::Int64(v), P::Long) => {
            Some((Datum::long(*v.min_opt()?), Datum::long(*v.max_opt()?)))
        }
        (Statistics::Int32(v), P::Int) => {
            Some((Datum::int(*v.min_opt()?), Datum::int(*v.max_opt()?)))
        }
        // A column someone else widened to long.
        (Statistics::Int32(v), P::Long) => Some((
            Datum::long(i64::from(*v.min_opt()?)),
            Datum::long(i64::from(*v.max_opt()?)),
        )),
        (Statistics::Double(v), P::Double) => {
            let (lo, hi) = (*v.min_opt()?, *v.max_opt()?);
            (!lo.is_nan() && !hi.is_nan()).then(|| (Datum::double(lo), Datum::double(hi)))
        }
        (Statistics::Boolean(v), P::Boolean) => {
            Some((Datum::bool(*v.min_opt()?), Datum::bool(*v.max_opt()?)))
        }
        (Statistics::ByteArray(v), P::String) => {
            let lo = std::str::from_utf8(v.min_opt()?.data()).ok()?;
            let hi = std::str::from_utf8(v.max_opt()?.data()).ok()?;
            (lo.len() <= 64 && hi.len() <= 64).then(|| (Datum::string(lo), Datum::string(hi)))
        }
        _ => None,
    }
}
