//! Parquet readers that fetch only the pages a row selection needs.
//!
//! A file read at the rows a full-text index found (a `ParquetRowSelection`) is only
//! cheap if the reader knows where each page starts: with the file's offset index the
//! Parquet reader fetches and decodes just the pages holding selected rows; without it,
//! every column chunk of a row group with one selected row. DataFusion loads the page
//! index only for predicates it can prune pages with, so the readers made here ask for
//! it whenever the file comes with a row selection (it is then kept with the footer in
//! DataFusion's metadata cache, and later reads of the file get it for free).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Readers through DataFusion's metadata cache; files with a row selection get their
/// page index.
#[derive(Debug)]
pub struct SelectedPageReaders {
    inner: CachedParquetFileReaderFactory,
}

impl SelectedPageReaders {
    pub fn new(inner: CachedParquetFileReaderFactory) -> Self {
        SelectedPageReaders { inner }
    }
}

impl ParquetFileReaderFactory for SelectedPageReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let selected = file.extensions.get::<ParquetRowSelection>().is_some();
        let reader =
            self.inner
                .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(if selected {
            Box::new(WithPageIndex(reader))
        } else {
            reader
        })
    }
}

/// A reader whose footer always comes with the page index (when the file has one). (Also
/// a boxed reader as a type of its own: parquet's stream builder takes a reader by value
/// and implements the trait only for boxes that are not `Send`.)
pub struct WithPageIndex(pub Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
