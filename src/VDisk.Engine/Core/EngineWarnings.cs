// Warnings the engine gives while it works, for something the caller should know but that does not stop the
// operation (a probe that guessed raw for a file whose first sector reads like a VMDK descriptor). Operations
// deep in a call (an image opened as the backing file of another) have no parameter to return them through,
// so a caller listens for the current async flow: the listener sees warnings from the calling thread and from
// any task it starts, and no other caller's.
namespace VDisk.Engine.Core;

/// <summary>Delivers engine warnings to whoever listens in the current async flow.</summary>
public static class EngineWarnings
{
    private static readonly AsyncLocal<Action<string>?> Listener = new();

    /// <summary>
    /// Sends every warning given in this async flow (and tasks started from it) to <paramref name="listener"/> until
    /// the returned scope is disposed. The listener may be called from worker threads.
    /// </summary>
    public static IDisposable Listen(Action<string> listener)
    {
        var previous = Listener.Value;
        Listener.Value = listener;
        return new Scope(previous);
    }

    /// <summary>Gives a warning to the current listener; without one it is dropped.</summary>
    internal static void Warn(string message) => Listener.Value?.Invoke(message);

    private sealed class Scope(Action<string>? previous) : IDisposable
    {
        public void Dispose() => Listener.Value = previous;
    }
}
