namespace Gpud.Engine.Models;

/// <summary>A model directory that cannot be used: the message names the file and what is wrong with it.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);
