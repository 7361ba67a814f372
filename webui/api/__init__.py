"""HTTP edges: A1111's /sdapi/v1 and Easel's own /easel/v1, thin layers over the Application's services."""
