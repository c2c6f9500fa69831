//! The Parquet schema of a route: `time`, `tag`, declared columns, `record`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit as ArrowTimeUnit};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::schema::types::ColumnPath;

use crate::config::{ColumnType, RollConfig, Route, TimeUnit};

/// Everything needed to write one route's files.
#[derive(Debug, Clone)]
pub struct RouteSchema {
    pub schema: SchemaRef,
    pub columns: Vec<(String, ColumnType)>,
    /// Divides nanoseconds into the `time` column's unit.
    pub time_divisor: i64,
    pub props: WriterPropertiesPtr,
}

impl RouteSchema {
    /// # Errors
    /// The zstd level is out of range (already checked by config validation).
    pub fn new(route: &Route, roll: &RollConfig) -> Result<Self, parquet::errors::ParquetError> {
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
        fields.push(Field::new("record", DataType::Utf8, false));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(roll.zstd_level)?))
            .set_max_row_group_row_count(Some(roll.row_group_rows))
            // Records are mostly unique: a dictionary only costs time there.
            .set_column_dictionary_enabled(ColumnPath::from("record"), false)
            .set_created_by(format!("weir version {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            columns: route.columns.clone(),
            time_divisor,
            props: Arc::new(props),
        })
    }
}
