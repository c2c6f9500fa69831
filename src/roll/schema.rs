//! The Parquet schema of a route: `time`, `tag`, declared columns,
//! `period` (routes with an Iceberg sink: the file's period, which its
//! table is partitioned by), `record` (marked as JSON).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit as ArrowTimeUnit};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::schema::types::ColumnPath;

use crate::roll::config::{ColumnType, RollConfig, TimeUnit};
use crate::router::Route;

/// Everything needed to write one route's files.
#[derive(Debug, Clone)]
pub struct RouteSchema {
    pub(crate) schema: SchemaRef,
    pub(crate) columns: Vec<(String, ColumnType)>,
    /// Divides nanoseconds into the `time` column's unit.
    pub(crate) time_divisor: i64,
    /// Whether files have the `period` column (the route has a table).
    pub period: bool,
    pub(crate) props: WriterPropertiesPtr,
    /// The Parquet schema (`record` as JSON).
    pub(crate) parquet_schema: parquet::schema::types::SchemaDescriptor,
}

impl RouteSchema {
    /// How a file (or a preview) of the route is written.
    pub(crate) fn writer_options(&self) -> parquet::arrow::arrow_writer::ArrowWriterOptions {
        parquet::arrow::arrow_writer::ArrowWriterOptions::new()
            .with_properties((*self.props).clone())
            .with_parquet_schema(self.parquet_schema.clone())
            // `props` carries the Arrow schema readers see (see `new`).
            .with_skip_arrow_metadata(true)
    }

    /// # Errors
    /// The zstd level is out of range (already checked by config validation).
    pub fn new(
        route: &Route,
        roll: &RollConfig,
        period: bool,
    ) -> Result<Self, parquet::errors::ParquetError> {
        let (unit, time_divisor) = match roll.time_unit {
            TimeUnit::Us => (ArrowTimeUnit::Microsecond, 1_000),
            TimeUnit::Ns => (ArrowTimeUnit::Nanosecond, 1),
        };
        let mut fields = vec![
            Field::new("time", DataType::Timestamp(unit, Some("UTC".into())), false),
            Field::new(
                "tag",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
        ];
        for (name, ty) in &route.columns {
            let dt = match ty {
                ColumnType::String => DataType::Utf8,
                ColumnType::Int32 => DataType::Int32,
                ColumnType::Int64 => DataType::Int64,
                ColumnType::Float64 => DataType::Float64,
                ColumnType::Bool => DataType::Boolean,
            };
            fields.push(Field::new(name, dt, true));
        }
        if period {
            fields.push(Field::new(
                "period",
                DataType::Timestamp(ArrowTimeUnit::Microsecond, Some("UTC".into())),
                false,
            ));
        }
        fields.push(Field::new("record", DataType::Utf8, false));
        let schema = Arc::new(Schema::new(fields));
        // In the Parquet schema `record` has the JSON logical type (engines
        // know it holds JSON); the Arrow schema stored beside it keeps plain
        // strings, which readers that map Arrow types (pyarrow, pyiceberg)
        // take as they are.
        let mut json = schema.fields().to_vec();
        if let Some(last) = json.last_mut() {
            *last = Arc::new(
                last.as_ref()
                    .clone()
                    .with_extension_type(arrow_schema::extension::Json::default()),
            );
        }
        let parquet_schema =
            parquet::arrow::ArrowSchemaConverter::new().convert(&Schema::new(json))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(roll.zstd_level)?))
            .set_max_row_group_row_count(Some(roll.row_group_rows))
            // Records are mostly unique: a dictionary only costs time there.
            .set_column_dictionary_enabled(ColumnPath::from("record"), false)
            // `period` is one value per file: delta encoding stores it in a
            // few bytes per page without hashing every row; its bounds are
            // the file's partition, so chunk statistics are enough.
            .set_column_dictionary_enabled(ColumnPath::from("period"), false)
            .set_column_encoding(ColumnPath::from("period"), Encoding::DELTA_BINARY_PACKED)
            .set_column_statistics_enabled(ColumnPath::from("period"), EnabledStatistics::Chunk)
            .set_created_by(format!("weir version {}", env!("CARGO_PKG_VERSION")))
            .build();
        // The Arrow schema stored for readers has `tag` as a plain string:
        // the column is dictionary-encoded in Parquet all the same, but
        // readers that merge files by their Arrow types (pyarrow datasets
        // with hive partitions, pyiceberg beside another writer's files)
        // find string everywhere instead of a dictionary in weir's files only.
        let stored: Vec<Arc<Field>> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "tag" {
                    Arc::new(Field::new("tag", DataType::Utf8, false))
                } else {
                    f.clone()
                }
            })
            .collect();
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&Schema::new(stored), &mut props);
        Ok(Self {
            schema,
            parquet_schema,
            columns: route.columns.clone(),
            time_divisor,
            period,
            props: Arc::new(props),
        })
    }
}
