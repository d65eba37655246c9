"""The notebook document: event catalog, projection tables, materializer, CRDT source, ordering."""
