using System.Globalization;
using Gpud.Engine.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>
/// AdamW (PyTorch's update rule, decoupled weight decay) over every trainable parameter at once. The parameters are
/// re-seated as views of one contiguous float32 buffer and their gradients as views of a second (autograd accumulates
/// into a gradient that already exists in place), so zeroing, the gradient norm, clipping and the update are a handful
/// of whole-buffer kernels however many adapter matrices there are — a 1B Llama with LoRA on all linear projections
/// has 224 — and none of them reads a value back to the host. Per-parameter AdamW issues about eight kernels per
/// matrix, and libtorch's clip_grad_norm_ ends with a host read, so on a GPU the device would sit idle while the host
/// dispatched them. Weight decay applies to matrices only: they come first in the buffer, so it is one prefix view.
/// <para>
/// With a compute dtype (bf16 training) it also keeps a copy of every parameter in that dtype, as views of a third flat
/// buffer with gradients of their own (<see cref="ComputeCopy"/>): the forward pass multiplies by these instead of
/// casting each float32 matrix in every forward pass (and back in every backward pass), about 450 kernels a step for a
/// 1B Llama. The values are the casts the forward pass would make, refreshed by one kernel after each update; the
/// gradients are the bf16 matmul results the casts' backward would widen, added to the float32 gradients by
/// <see cref="AccumulateComputeGradients"/> after each backward pass. The arithmetic is unchanged.
/// </para>
/// </summary>
public sealed class FlatAdamW : IDisposable
{
    private const string ExpAvg = "exp_avg";
    private const string ExpAvgSq = "exp_avg_sq";
    private const string StepKey = "step";

    private readonly List<Parameter> _parameters; // matrices first, in the order given
    private readonly Tensor _values;
    private readonly Tensor _grads;
    private readonly Tensor _expAvg;
    private readonly Tensor _expAvgSq;
    private readonly long _decayed; // the leading elements (the matrices) that weight decay applies to
    private readonly double _beta1, _beta2, _epsilon, _weightDecay;
    private readonly Tensor? _computeValues; // the parameters in the compute dtype, same layout as _values
    private readonly Tensor? _computeGrads;
    private readonly Dictionary<Parameter, Parameter> _computeCopies = new(ReferenceEqualityComparer.Instance);

    /// <param name="parameters">float32 leaves on one device; their storage and gradients move into the flat buffers
    /// (the same Parameter objects stay in use, so modules and exporters see the updates).</param>
    /// <param name="computeDtype">The dtype the forward pass multiplies in, when it is not float32: keep copies in it.</param>
    public FlatAdamW(IReadOnlyList<Parameter> parameters, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0,
        ScalarType? computeDtype = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count == 0) throw new ArgumentException("Nothing to optimize.", nameof(parameters));
        var device = parameters[0].device;
        if (parameters.Any(p => p.dtype != ScalarType.Float32 || p.device_type != device.type || p.device_index != device.index))
            throw new ArgumentException("Every parameter must be float32 on one device.", nameof(parameters));
        (_beta1, _beta2, _epsilon, _weightDecay) = (beta1, beta2, epsilon, weightDecay);

        _parameters = parameters.Where(p => p.dim() > 1).Concat(parameters.Where(p => p.dim() <= 1)).ToList();
        _decayed = _parameters.Where(p => p.dim() > 1).Sum(p => p.numel());
        var total = _parameters.Sum(p => p.numel());
        _values = empty(total, ScalarType.Float32, device);
        _grads = zeros(total, ScalarType.Float32, device);
        _expAvg = zeros(total, ScalarType.Float32, device);
        _expAvgSq = zeros(total, ScalarType.Float32, device);
        using var noGrad = no_grad();
        using (NewDisposeScope()) // the views' handles; the parameters keep their own references
        {
            long offset = 0;
            foreach (var parameter in _parameters)
            {
                var n = parameter.numel();
                var value = _values.narrow(0, offset, n).view(parameter.shape);
                value.copy_(parameter);
                parameter.set_(value);
                parameter.grad = _grads.narrow(0, offset, n).view(parameter.shape);
                offset += n;
            }
        }
        if (computeDtype is not { } dtype || dtype == ScalarType.Float32) return;

        _computeValues = _values.to_type(dtype);
        _computeGrads = zeros(total, dtype, device);
        using (NewDisposeScope())
        {
            long offset = 0;
            foreach (var parameter in _parameters)
            {
                var n = parameter.numel();
                var copy = new Parameter(empty(0, dtype, device));
                copy.set_(_computeValues.narrow(0, offset, n).view(parameter.shape));
                copy.grad = _computeGrads.narrow(0, offset, n).view(parameter.shape);
                copy.DetachFromDisposeScope();
                _computeCopies[parameter] = copy;
                offset += n;
            }
        }
    }

    /// <summary>
    /// <paramref name="parameter"/> in the compute dtype, a leaf whose gradient <see cref="AccumulateComputeGradients"/>
    /// adds to the parameter's; null without a compute dtype. Valid until this optimizer is disposed.
    /// </summary>
    public Parameter? ComputeCopy(Parameter parameter) => _computeCopies.GetValueOrDefault(parameter);

    /// <summary>
    /// Adds the compute copies' gradients to the float32 ones and clears them. Call it after every backward pass: the
    /// float32 buffer is where gradients accumulate over micro-batches, as they would through the casts.
    /// </summary>
    public void AccumulateComputeGradients()
    {
        if (_computeGrads is null) return;
        _grads.add_(_computeGrads);
        _computeGrads.zero_();
    }

    /// <summary>Re-casts the compute copies from the float32 values (after the values were set from outside, as a resume does).</summary>
    public void RefreshComputeCopies()
    {
        if (_computeValues is null) return;
        using var noGrad = no_grad();
        _computeValues.copy_(_values);
    }

    /// <summary>Updates taken so far (the bias corrections' t).</summary>
    public long Steps { get; private set; }

    public void ZeroGrad() => _grads.zero_();

    /// <summary>
    /// Scales the gradients so that their global L2 norm is at most <paramref name="maxNorm"/>, as
    /// <c>torch.nn.utils.clip_grad_norm_</c> does; returns the norm before clipping as a device scalar (not read back).
    /// </summary>
    public Tensor ClipGradNorm(double maxNorm)
    {
        using var scope = NewDisposeScope();
        var norm = _grads.norm();
        var coefficient = (norm + 1e-6).reciprocal_().mul_(maxNorm).clamp_max_(1.0);
        _grads.mul_(coefficient);
        return norm.MoveToOuterDisposeScope();
    }

    public void Step(double learningRate)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Steps++;
        if (_weightDecay != 0 && _decayed > 0) _values.narrow(0, 0, _decayed).mul_(1 - learningRate * _weightDecay);
        _expAvg.mul_(_beta1).add_(_grads, alpha: 1 - _beta1);
        _expAvgSq.mul_(_beta2).addcmul_(_grads, _grads, value: 1 - _beta2);
        var biasCorrection1 = 1 - Math.Pow(_beta1, Steps);
        var biasCorrection2 = 1 - Math.Pow(_beta2, Steps);
        var denominator = _expAvgSq.sqrt().div_(Math.Sqrt(biasCorrection2)).add_(_epsilon);
        _values.addcdiv_(_expAvg, denominator, value: -learningRate / biasCorrection1);
        _computeValues?.copy_(_values);
    }

    /// <summary>Writes the moments and the step count (atomically, as a safetensors file).</summary>
    public void Save(string path)
    {
        using var avg = _expAvg.to(CPU);
        using var avgSq = _expAvgSq.to(CPU);
        SafetensorsWriter.Write(path,
            [new TensorData(ExpAvg, "F32", avg.shape, avg.bytes.ToArray()), new TensorData(ExpAvgSq, "F32", avgSq.shape, avgSq.bytes.ToArray())],
            new Dictionary<string, string> { ["format"] = "pt", [StepKey] = Steps.ToString(CultureInfo.InvariantCulture) });
    }

    /// <summary>Restores what <see cref="Save"/> wrote for the same parameters.</summary>
    /// <exception cref="InvalidDataException">The file belongs to another parameter layout.</exception>
    public void Load(string path)
    {
        using var file = new SafetensorsFile(path);
        if (!file.Contains(ExpAvg) || !file.Contains(ExpAvgSq) || file.ShapeOf(ExpAvg) is not [var n] || n != _values.numel()
            || !file.Metadata.TryGetValue(StepKey, out var step))
            throw new InvalidDataException($"{path} holds no optimizer state for these {_values.numel()} parameters.");
        using var noGrad = no_grad();
        using (var avg = file.Read(ExpAvg, ScalarType.Float32)) _expAvg.copy_(avg);
        using (var avgSq = file.Read(ExpAvgSq, ScalarType.Float32)) _expAvgSq.copy_(avgSq);
        Steps = long.Parse(step, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Restores the state TorchSharp's AdamW saved (<c>save_state_dict</c>) for the same parameters in two groups,
    /// matrices then vectors: checkpoints of jobs that an earlier gpud paused or interrupted resume without a jump.
    /// </summary>
    public void LoadTorchSharpState(string path)
    {
        var matrices = _parameters.Where(p => p.dim() > 1).ToList();
        var vectors = _parameters.Where(p => p.dim() <= 1).ToList();
        var groups = new List<AdamW.ParamGroup>();
        if (matrices.Count > 0) groups.Add(new AdamW.ParamGroup(matrices, 1e-3, _beta1, _beta2, _epsilon, _weightDecay, false, false));
        if (vectors.Count > 0) groups.Add(new AdamW.ParamGroup(vectors, 1e-3, _beta1, _beta2, _epsilon, 0, false, false));
        using var legacy = optim.AdamW(groups);
        legacy.load_state_dict(path);
        var states = legacy.state_dict().State.Cast<AdamW.State>().ToList();
        if (states.Count != _parameters.Count) throw new InvalidDataException($"{path} holds state for {states.Count} parameters, not {_parameters.Count}.");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long offset = 0;
        for (var i = 0; i < states.Count; i++)
        {
            var n = _parameters[i].numel();
            if (states[i].exp_avg.numel() != n) throw new InvalidDataException($"{path} belongs to another parameter layout.");
            _expAvg.narrow(0, offset, n).copy_(states[i].exp_avg.reshape(-1));
            _expAvgSq.narrow(0, offset, n).copy_(states[i].exp_avg_sq.reshape(-1));
            offset += n;
        }
        Steps = states.Count > 0 ? states[0].step : 0;
    }

    public void Dispose()
    {
        _values.Dispose();
        _grads.Dispose();
        _expAvg.Dispose();
        _expAvgSq.Dispose();
        foreach (var copy in _computeCopies.Values) copy.Dispose();
        _computeValues?.Dispose();
        _computeGrads?.Dispose();
    }
}
