namespace Gpud.Services.Batches;

/// <summary>Where batches keep their journals, and how many of a batch's requests run at once.</summary>
public sealed record BatchSettings(string DataDir, int RequestsInFlight)
{
    public string JournalPath(string batchId) => Path.Combine(DataDir, "batches", batchId, "results.jsonl");
}
