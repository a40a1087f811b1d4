// SIGTERM (systemd stopping a unit, timeout(1), kill, a container runtime) stops running engine work the way
// Ctrl+C does, so the engine's cleanup runs (a half-written temporary output is removed, locks are released)
// before the process ends as SIGTERM asks. SIGKILL cannot be caught: the temporary file it leaves is removed by
// the next VDisk run that writes into the same folder (see the engine's TemporaryOutputs).
using System.Runtime.InteropServices;

namespace VDisk.PowerShell.Commands;

/// <summary>While alive, turns SIGTERM into cancelling one piece of engine work and waiting for its cleanup.</summary>
internal sealed class TerminationSignal : IDisposable
{
    private static readonly TimeSpan CleanupLimit = TimeSpan.FromSeconds(30);
    private readonly PosixSignalRegistration? _registration;
    private volatile bool _received;

    /// <summary>Watches for SIGTERM while <paramref name="work"/> runs; on it, cancels <paramref name="stop"/> and waits for the work to end.</summary>
    public TerminationSignal(CancellationTokenSource stop, Task work)
    {
        try
        {
            _registration = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ =>
            {
                _received = true;
                try
                {
                    stop.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    return; // the command already finished
                }
                // Wait for the cleanup (bounded, as systemd waits before SIGKILL); the default action (exit) then follows.
                ((IAsyncResult)work).AsyncWaitHandle.WaitOne(CleanupLimit);
            });
        }
        catch (PlatformNotSupportedException)
        {
            _registration = null; // a host without SIGTERM
        }
    }

    /// <summary>True once SIGTERM has cancelled the work.</summary>
    public bool Received => _received;

    /// <summary>Stops watching.</summary>
    public void Dispose() => _registration?.Dispose();
}
