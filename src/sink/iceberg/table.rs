//! A route's table: its shape (schema, partition spec, name mapping), and
//! bringing a table in the catalog to that shape: created when missing,
//! declared columns added as optional columns, a changed type, a removed
//! column or a table someone else reshaped refused with the route and
//! column named.
//!
//! Columns: `time` (timestamptz), `tag`, the declared columns, `period` and
//! `record`; `period` is the start of the period a file belongs to (the arrival period
//! for an `outside` file, whose events may be dated anywhere). The
//! partition spec is `identity(tag)` (per-tag routes) and `hour(period)`:
//! constant within every file weir writes, `outside` files included, while
//! engines prune `time` filters through the per-file bounds in the
//! manifests. Files carry no field ids; the table's
//! `schema.name-mapping.default` maps their column names to the table's
//! ids, kept current by weir.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

use crate::roll::config::ColumnType;
use crate::router::{FileGrouping, Route};

/// Table property listing the declared columns weir added, so a column a
/// route no longer declares is told from one another writer added.
const COLUMNS_PROPERTY: &str = "weir.columns";
const NAME_MAPPING: &str = "schema.name-mapping.default";

/// When a table is brought to shape: a start (or reload, or `weir check`)
/// answers for this node's config and may refuse it; a commit of a running
/// node only takes the table as it finds it, so another node's config or
/// another writer's change never stalls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    Start,
    Commit,
}

/// What a route's table must look like.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub(crate) route: String,
    pub(crate) table: String,
    pub(crate) per_route: bool,
    pub(crate) columns: Vec<(String, ColumnType)>,
}

impl Shape {
    pub(super) fn of(route: &Route) -> Self {
        Self {
            route: route.name.clone(),
            table: route.table.clone(),
            per_route: route.files == FileGrouping::PerRoute,
            columns: route.columns.clone(),
        }
    }
}

/// Why a table cannot take a route's files.
#[derive(Debug, thiserror::Error)]
pub(super) enum TableError {
    /// The route's config and the table disagree in a way weir will not
    /// change by itself.
    #[error("route {route}: column `{column}` of table {table}: {why}")]
    Refused {
        route: String,
        table: String,
        column: String,
        why: String,
    },
    /// Someone else changed the table's built-in shape.
    #[error("table {table} (route {route}) was altered by someone else: {why}; weir will not write to it until it is restored")]
    Altered {
        route: String,
        table: String,
        why: String,
    },
    #[error("catalog: {0}")]
    Catalog(#[from] iceberg::Error),
}

fn iceberg_type(t: ColumnType) -> PrimitiveType {
    match t {
        ColumnType::String => PrimitiveType::String,
        ColumnType::Int32 => PrimitiveType::Int,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Bool => PrimitiveType::Boolean,
    }
}

/// The built-in columns: name, type, required.
fn builtins() -> [(&'static str, PrimitiveType); 4] {
    [
        ("time", PrimitiveType::Timestamptz),
        ("tag", PrimitiveType::String),
        ("record", PrimitiveType::String),
        ("period", PrimitiveType::Timestamptz),
    ]
}

/// The schema a new table gets: ids are assigned by the catalog in this
/// order (time, tag, declared columns by name, period, record).
fn new_schema(shape: &Shape) -> Result<Schema, iceberg::Error> {
    let mut fields = vec![
        NestedField::required(1, "time", Type::Primitive(PrimitiveType::Timestamptz)),
        NestedField::required(2, "tag", Type::Primitive(PrimitiveType::String)),
    ];
    let mut id = 3;
    for (name, t) in &shape.columns {
        fields.push(NestedField::optional(
            id,
            name,
            Type::Primitive(iceberg_type(*t)),
        ));
        id += 1;
    }
    fields.push(NestedField::required(
        id,
        "period",
        Type::Primitive(PrimitiveType::Timestamptz),
    ));
    fields.push(NestedField::required(
        id + 1,
        "record",
        Type::Primitive(PrimitiveType::String),
    ));
    Schema::builder()
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
}

fn new_spec(shape: &Shape, schema: &Schema) -> Result<UnboundPartitionSpec, iceberg::Error> {
    let id = |name: &str| schema.field_by_name(name).map_or(0, |f| f.id);
    let mut b = UnboundPartitionSpec::builder();
    if !shape.per_route {
        b = b.add_partition_field(id("tag"), "tag", Transform::Identity)?;
    }
    b = b.add_partition_field(id("period"), "period_hour", Transform::Hour)?;
    Ok(b.build())
}

/// `schema.name-mapping.default`: every top-level column's name to its id,
/// the current schema's first, then names only earlier schemas had (a
/// dropped column) with their last id: files written before the drop still
/// hold the column, and readers that map by name (pyiceberg) refuse a file
/// column the mapping does not know. Its id is in no current field, so
/// readers skip it.
pub(super) fn name_mapping<'a>(
    current: &Schema,
    earlier: impl IntoIterator<Item = &'a Schema>,
) -> String {
    let mut seen: Vec<(String, i32)> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.id))
        .collect();
    let mut earlier: Vec<&Schema> = earlier.into_iter().collect();
    earlier.sort_by_key(|s| std::cmp::Reverse(s.schema_id()));
    for schema in earlier {
        for f in schema.as_struct().fields() {
            if !seen.iter().any(|(n, _)| *n == f.name) {
                seen.push((f.name.clone(), f.id));
            }
        }
    }
    let fields: Vec<serde_json::Value> = seen
        .into_iter()
        .map(|(name, id)| serde_json::json!({"field-id": id, "names": [name]}))
        .collect();
    serde_json::Value::Array(fields).to_string()
}

/// [`name_mapping`] of a table's current and earlier schemas.
pub(super) fn table_name_mapping(table: &Table) -> String {
    let m = table.metadata();
    name_mapping(m.current_schema(), m.schemas_iter().map(|s| s.as_ref()))
}

/// The table of `shape` in `namespace`, created or brought to the shape.
/// `known_uuid`: the table this sink wrote to before, if any; a table with
/// another uuid, or none where one was, is refused (someone dropped or
/// replaced it), never created over.
///
/// Returns the table and what is worth a warning (the caller logs it).
///
/// # Errors
/// The catalog fails, or the table refuses the shape ([`TableError`]).
pub(super) async fn prepare(
    catalog: &dyn Catalog,
    namespace: &NamespaceIdent,
    location: &str,
    shape: &Shape,
    known_uuid: Option<&str>,
    moment: Moment,
) -> Result<(Table, Vec<String>), TableError> {
    let ident = TableIdent::new(namespace.clone(), shape.table.clone());
    let table = if catalog.table_exists(&ident).await? {
        catalog.load_table(&ident).await?
    } else if let Some(uuid) = known_uuid {
        return Err(TableError::Altered {
            route: shape.route.clone(),
            table: ident.to_string(),
            why: format!("it was dropped (weir wrote to it as table uuid {uuid})"),
        });
    } else {
        create(catalog, namespace, location, shape).await?
    };
    if let Some(uuid) = known_uuid {
        let now = table.metadata().uuid().to_string();
        if now != uuid {
            return Err(TableError::Altered {
                route: shape.route.clone(),
                table: ident.to_string(),
                why: format!("it was replaced (uuid {uuid}, now {now})"),
            });
        }
    }
    evolve(catalog, table, shape, moment).await
}

async fn create(
    catalog: &dyn Catalog,
    namespace: &NamespaceIdent,
    location: &str,
    shape: &Shape,
) -> Result<Table, TableError> {
    let schema = new_schema(shape)?;
    let spec = new_spec(shape, &schema)?;
    let declared: Vec<&str> = shape.columns.iter().map(|(n, _)| n.as_str()).collect();
    let properties = HashMap::from([
        (NAME_MAPPING.to_string(), name_mapping(&schema, [])),
        (COLUMNS_PROPERTY.to_string(), declared.join(",")),
        ("weir.route".to_string(), shape.route.clone()),
        ("write.format.default".to_string(), "parquet".to_string()),
        (
            "write.parquet.compression-codec".to_string(),
            "zstd".to_string(),
        ),
    ]);
    let creation = TableCreation::builder()
        .name(shape.table.clone())
        .location(location.to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties(properties)
        .build();
    match catalog.create_table(namespace, creation).await {
        Ok(t) => {
            tracing::info!(table = %t.identifier(), location, "created Iceberg table");
            Ok(t)
        }
        // Another node of the tier created it first: take theirs.
        Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => Ok(catalog
            .load_table(&TableIdent::new(namespace.clone(), shape.table.clone()))
            .await?),
        Err(e) => Err(e.into()),
    }
}

/// What bringing a table to a route's shape takes.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Declared columns the table lacks (added as optional columns).
    pub(crate) add: Vec<(String, PrimitiveType)>,
    /// The declared columns weir answers for, after the change.
    declared: Vec<String>,
    /// What is allowed but worth saying (logged at start, printed by
    /// `weir check`).
    pub(crate) warnings: Vec<String>,
    /// The name mapping and weir's column list are up to date.
    properties_current: bool,
}

impl Plan {
    /// The table needs no change at all.
    pub(super) fn is_noop(&self) -> bool {
        self.add.is_empty() && self.properties_current
    }
}

/// Whether a column of type `have` takes values of `want` as Iceberg's
/// allowed promotions do (another writer widened the column): int → long,
/// float → double.
fn widens(want: &PrimitiveType, have: &PrimitiveType) -> bool {
    matches!(
        (want, have),
        (PrimitiveType::Int, PrimitiveType::Long) | (PrimitiveType::Float, PrimitiveType::Double)
    )
}

/// Checks the built-in shape and refuses type changes, and at a start a
/// column weir declared that the route no longer declares; returns the
/// changes it allows. Changes nothing (`weir check` uses it as it is).
///
/// # Errors
/// The table was altered by someone else, or refuses the route's config.
pub(super) fn plan(table: &Table, shape: &Shape, moment: Moment) -> Result<Plan, TableError> {
    let ident = table.identifier().to_string();
    let schema = table.metadata().current_schema().clone();
    let altered = |why: String| TableError::Altered {
        route: shape.route.clone(),
        table: ident.clone(),
        why,
    };
    for (name, want) in builtins() {
        match schema
            .field_by_name(name)
            .map(|f| f.field_type.as_ref().clone())
        {
            Some(Type::Primitive(t)) if t == want => {}
            Some(t) => return Err(altered(format!("column `{name}` is {t}, not {want}"))),
            None => return Err(altered(format!("column `{name}` is missing"))),
        }
    }
    let spec = table.metadata().default_partition_spec();
    // Each field with the column it reads: a field of the right name and
    // transform over another column (hour(`time`) for hour(`period`))
    // would file rows under partitions their values do not have.
    let names: Vec<(String, Transform, String)> = spec
        .fields()
        .iter()
        .map(|f| {
            let source = schema
                .field_by_id(f.source_id)
                .map_or_else(|| format!("field {}", f.source_id), |c| c.name.clone());
            (f.name.clone(), f.transform, source)
        })
        .collect();
    let mut want_spec = vec![(
        "period_hour".to_string(),
        Transform::Hour,
        "period".to_string(),
    )];
    if !shape.per_route {
        want_spec.insert(
            0,
            ("tag".to_string(), Transform::Identity, "tag".to_string()),
        );
    }
    if names != want_spec {
        return Err(altered(format!(
            "its partition spec is {names:?}, weir writes {want_spec:?} (files = {})",
            if shape.per_route {
                "per_route"
            } else {
                "per_tag"
            }
        )));
    }
    let mut plan = Plan::default();
    for (name, t) in &shape.columns {
        let want = iceberg_type(*t);
        match schema.field_by_name(name).map(|f| f.field_type.as_ref().clone()) {
            Some(Type::Primitive(have)) if have == want || widens(&want, &have) => {}
            Some(have) => {
                return Err(TableError::Refused {
                    route: shape.route.clone(),
                    table: ident,
                    column: name.clone(),
                    why: format!(
                        "declared {} (Iceberg {want}) but the table has {have}; changing a column's type is refused: declare a new column instead",
                        t.as_str()
                    ),
                })
            }
            None => plan.add.push((name.clone(), want)),
        }
    }
    let ours: Vec<String> = table
        .metadata()
        .properties()
        .get(COLUMNS_PROPERTY)
        .map(|s| {
            s.split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for gone in ours
        .iter()
        .filter(|c| !shape.columns.iter().any(|(n, _)| n == *c))
    {
        if schema.field_by_name(gone).is_none() {
            continue;
        }
        if moment == Moment::Start {
            return Err(TableError::Refused {
                route: shape.route.clone(),
                table: ident,
                column: gone.clone(),
                why: "weir declared it on the table but the route no longer declares it; removing a column is refused (weir never drops one): declare it again, or drop it from the table with your engine first (ALTER TABLE ... DROP COLUMN), then start".to_string(),
            });
        }
        // A running node meets this when another node of the tier started
        // with a config that declares more: the table keeps the column and
        // this node's rows leave it null.
        plan.warnings.push(format!(
            "route {}: column `{gone}` of table {ident} is not declared by this node's route; this node's rows leave it null until it runs the same config",
            shape.route
        ));
    }
    let mut dropped = Vec::new();
    plan.add.retain(|(name, _)| {
        let ours = ours.iter().any(|c| c == name);
        if ours {
            dropped.push(name.clone());
        }
        // Someone dropped a column weir declared: a start (this node's
        // config says so) adds it back, a running node leaves it out.
        !ours || moment == Moment::Start
    });
    for name in dropped {
        plan.warnings.push(if moment == Moment::Start {
            format!(
                "route {}: column `{name}` of table {ident} was dropped by someone else; weir adds it back as this route declares it (files that had it read their values again through the name mapping)",
                shape.route
            )
        } else {
            format!(
                "route {}: column `{name}` of table {ident} was dropped by someone else; this node's files keep the values but the table does not show them until a start adds the column back",
                shape.route
            )
        });
    }
    let mut declared: Vec<String> = ours
        .into_iter()
        .filter(|c| schema.field_by_name(c).is_some())
        .chain(shape.columns.iter().map(|(n, _)| n.clone()))
        .collect();
    declared.sort();
    declared.dedup();
    let props = table.metadata().properties();
    plan.properties_current = props.get(NAME_MAPPING) == Some(&table_name_mapping(table))
        && props.get(COLUMNS_PROPERTY) == Some(&declared.join(","));
    plan.declared = declared;
    Ok(plan)
}

/// Applies [`plan`]: adds the new declared columns (optional: older files
/// read them as null) and keeps the name mapping current.
async fn evolve(
    catalog: &dyn Catalog,
    table: Table,
    shape: &Shape,
    moment: Moment,
) -> Result<(Table, Vec<String>), TableError> {
    let plan = plan(&table, shape, moment)?;
    let mut table = table;
    if !plan.add.is_empty() {
        let tx = Transaction::new(&table);
        let mut update = tx.update_schema();
        for (name, t) in &plan.add {
            update = update.add_column(iceberg::transaction::AddColumn::optional(
                name,
                Type::Primitive(t.clone()),
            ));
        }
        let tx = update.apply(tx)?;
        table = tx.commit(catalog).await?;
        tracing::info!(table = %table.identifier(), columns = ?plan.add.iter().map(|(n, _)| n).collect::<Vec<_>>(), "added columns to the Iceberg table");
    }
    let declared = plan.declared.join(",");
    let props = table.metadata().properties();
    let mapping = table_name_mapping(&table);
    if props.get(NAME_MAPPING) != Some(&mapping) || props.get(COLUMNS_PROPERTY) != Some(&declared) {
        let tx = Transaction::new(&table);
        let tx = tx
            .update_table_properties()
            .set(NAME_MAPPING.to_string(), mapping)
            .set(COLUMNS_PROPERTY.to_string(), declared)
            .apply(tx)?;
        table = tx.commit(catalog).await?;
    }
    Ok((table, plan.warnings))
}
