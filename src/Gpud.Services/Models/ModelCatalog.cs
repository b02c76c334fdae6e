using System.Collections.Concurrent;
using Gpud.Engine.Demo;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Weights;
using Gpud.Services.Errors;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Models;

/// <summary>
/// The base models this node serves. Each configured directory is checked once at start-up (config.json, the
/// safetensors headers and shards, the tokenizer); a broken one is logged by name and left out while the others are
/// served. Weights are not loaded here: the trainer and the inference scheduler load them onto a device when needed.
/// </summary>
public sealed partial class ModelCatalog(IReadOnlyList<BaseModelDefinition> definitions, string demoDirectory, ILogger<ModelCatalog> logger)
{
    private readonly ConcurrentDictionary<string, BaseModel> _models = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _failures = new(StringComparer.Ordinal);
    private volatile bool _loaded;

    /// <summary>Every configured model plus gpud-tiny.</summary>
    public IReadOnlyList<BaseModelDefinition> Definitions { get; } =
        [new BaseModelDefinition(DemoModel.Name, demoDirectory, null, [], BuiltIn: true), .. definitions];

    /// <summary>True once every definition has been checked (successfully or not).</summary>
    public bool Loaded => _loaded;

    /// <summary>Models that failed their check, with the reason.</summary>
    public IReadOnlyDictionary<string, string> Failures => _failures;

    public IReadOnlyList<BaseModel> List() => Definitions.Where(d => _models.ContainsKey(d.Name)).Select(d => _models[d.Name]).ToList();

    public BaseModel Get(string name) =>
        _models.TryGetValue(name, out var model) ? model : throw NotFound(name);

    public bool TryGet(string name, out BaseModel model) => _models.TryGetValue(name, out model!);

    public static GpudException NotFound(string name) => new(ErrorKind.NotFound,
        $"The model '{name}' does not exist or you do not have access to it.", "model", "model_not_found");

    /// <summary>Checks every definition; called once at start-up, off the request path.</summary>
    public void LoadAll(CancellationToken cancellationToken)
    {
        foreach (var definition in Definitions)
        {
            if (cancellationToken.IsCancellationRequested) break;
            try
            {
                if (definition.BuiltIn) DemoModel.EnsureCreated(definition.Path);
                var model = Inspect(definition);
                _models[definition.Name] = model;
                LogReady(logger, definition.Name, model.Config.Architecture.ToString(), model.Config.ParameterCount, definition.Path,
                    model.ChatTemplate?.Family ?? $"none ({model.ChatTemplateError ?? "no chat_template"})");
            }
            catch (Exception e) when (e is ModelLoadException or IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
            {
                _failures[definition.Name] = e.Message;
                LogBroken(logger, definition.Name, definition.Path, e.Message);
            }
        }
        _loaded = true;
    }

    private static BaseModel Inspect(BaseModelDefinition definition)
    {
        if (!Directory.Exists(definition.Path)) throw new ModelLoadException($"{definition.Path} is not a directory.");
        var config = ModelConfig.Load(definition.Path);
        using (Checkpoint.Open(definition.Path))
        {
            // Opening parses every shard's header and checks the index against the shards.
        }
        var tokenizer = TextTokenizer.Load(definition.Path);
        if (tokenizer.VocabSize > config.VocabSize)
            throw new ModelLoadException($"{definition.Path}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {config.VocabSize}.");
        var created = new DateTimeOffset(File.GetLastWriteTimeUtc(Path.Combine(definition.Path, "config.json"))).ToUnixTimeSeconds();
        ChatTemplate? template = null;
        string? templateError = null;
        if (tokenizer.ChatTemplate is { } source)
        {
            try
            {
                template = ChatTemplate.Parse(source);
            }
            catch (TemplateSyntaxException e)
            {
                templateError = $"its chat template cannot be parsed ({e.Message})";
            }
        }
        return new BaseModel(definition, config, tokenizer, created, template, templateError);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Name} ready: {Architecture}, {Parameters} parameters, chat template {ChatTemplate}, from {Path}")]
    private static partial void LogReady(ILogger logger, string name, string architecture, long parameters, string path, string chatTemplate);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Name} at {Path} cannot be served: {Reason}")]
    private static partial void LogBroken(ILogger logger, string name, string path, string reason);
}
