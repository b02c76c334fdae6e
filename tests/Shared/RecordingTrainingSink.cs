using Gpud.Engine.Training;

namespace Gpud.Tests.Infrastructure;

/// <summary>A trainer sink for tests: records every step, checkpoints where asked, and can stop after a given step.</summary>
public sealed class RecordingTrainingSink(Func<int, bool, string?>? checkpointTo = null, Action<string>? export = null, int? stopAfter = null) : ITrainingSink
{
    public List<TrainingProgress> Steps { get; } = [];

    public void OnStep(TrainingProgress progress) => Steps.Add(progress);

    public string? CheckpointDirectory(int step, bool endOfEpoch) => checkpointTo?.Invoke(step, endOfEpoch);

    public void ExportAdapter(string directory) => export?.Invoke(directory);

    public bool StopAfterStep(int step) => step == stopAfter;
}
