using Gpud.Engine.Demo;
using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>One entry of <c>Gpud:Models:&lt;name&gt;</c>: a Hugging Face model directory to serve and fine-tune.</summary>
public sealed class ModelEntryOptions
{
    /// <summary>The model directory (config.json, safetensors, tokenizer files). Mount it read-only in containers.</summary>
    public string Path { get; set; } = "";

    /// <summary><c>bfloat16</c>, <c>float16</c> or <c>float32</c>; default bfloat16 on CUDA, float32 on CPU.</summary>
    public string? Dtype { get; set; }

    /// <summary>Devices it may use (<c>cuda:0</c>, <c>cpu</c>); default any.</summary>
    public List<string> Devices { get; set; } = [];
}

/// <summary>The <c>Gpud:Models</c> section, keyed by the name clients use as <c>model</c>.</summary>
public sealed class ModelOptions
{
    public Dictionary<string, ModelEntryOptions> Models { get; set; } = new(StringComparer.Ordinal);
}

internal sealed class ModelOptionsValidator : IValidateOptions<ModelOptions>
{
    private static readonly HashSet<string> Dtypes = ["bfloat16", "float16", "float32"];

    public ValidateOptionsResult Validate(string? name, ModelOptions options)
    {
        var failures = new List<string>();
        foreach (var (model, entry) in options.Models)
        {
            if (model.Length is 0 or > 128 || !model.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/'))
                failures.Add($"Gpud:Models:{model}: model names use letters, digits, '-', '_', '.' and '/' (at most 128), and no ':'.");
            if (model == DemoModel.Name)
                failures.Add($"Gpud:Models:{model}: '{DemoModel.Name}' is the built-in demo model's name.");
            if (string.IsNullOrWhiteSpace(entry.Path))
                failures.Add($"Gpud:Models:{model}:Path must name a Hugging Face model directory.");
            if (entry.Dtype is not null && !Dtypes.Contains(entry.Dtype))
                failures.Add($"Gpud:Models:{model}:Dtype must be bfloat16, float16 or float32 (got '{entry.Dtype}').");
            foreach (var device in entry.Devices)
            {
                if (!Engine.Compute.ComputeDevice.IsValidId(device))
                    failures.Add($"Gpud:Models:{model}:Devices: '{device}' is not 'cpu' or 'cuda:N'.");
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
