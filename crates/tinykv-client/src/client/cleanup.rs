//! `cleanup`: asking a node to remove its copies of ranges it no longer
//! replicates, and following the round until it ends.

use tinykv_proto::tinykv as pb;

use super::Client;
use crate::ClientError;

impl Client {
    /// Asks the first endpoint for a cleanup round (after the running one,
    /// if any) and returns at once; `round` in the answer is the round to
    /// wait for (see [`Client::cleanup_status`]).
    pub async fn cleanup(&self) -> Result<pb::CleanupResponse, ClientError> {
        self.cleanup_call(false).await
    }

    /// Where cleanup stands on the first endpoint, starting nothing.
    pub async fn cleanup_status(&self) -> Result<pb::CleanupResponse, ClientError> {
        self.cleanup_call(true).await
    }

    async fn cleanup_call(&self, report_only: bool) -> Result<pb::CleanupResponse, ClientError> {
        let req = pb::CleanupRequest { report_only };
        Ok(self.admin().cleanup(self.request(req)).await?.into_inner())
    }
}
