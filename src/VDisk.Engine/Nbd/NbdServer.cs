// An NBD server over the engine (proto.md "Protocol phases", "Fixed newstyle negotiation", "Transmission"):
// named exports of VirtualDisks on TCP (127.0.0.1 by default) and Unix sockets, each connection negotiated by
// NbdHandshake and served by NbdTransmission. A failing or vanishing client ends only its own connection.
// Dispose stops the listeners, closes every connection, waits for requests in flight and closes the images.
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using VDisk.Engine.Core;

namespace VDisk.Engine.Nbd;

/// <summary>Serves <see cref="NbdExport"/>s over the NBD protocol.</summary>
public sealed class NbdServer : IDisposable
{
    /// <summary>The IANA port of NBD.</summary>
    public const int DefaultPort = 10809;
    private static readonly TimeSpan HandshakeLimit = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ShutdownLimit = TimeSpan.FromSeconds(10);

    private readonly List<NbdExport> _exports;
    private readonly Dictionary<string, NbdExport> _byName = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _listeners = new();
    private readonly List<Task> _acceptLoops = new();
    private readonly List<string> _socketFiles = new();
    private readonly ConcurrentDictionary<Socket, Task> _connections = new();
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>A server of <paramref name="exports"/> (names must differ); it owns their disks from now on.</summary>
    public NbdServer(IEnumerable<NbdExport> exports)
    {
        _exports = exports.ToList();
        foreach (var export in _exports)
            if (!_byName.TryAdd(export.Name, export))
                throw VDiskException.Invalid(export.Disk.Path, $"Two exports are named '{export.Name}'.");
        if (_exports.Count == 0) throw new ArgumentException("An NBD server needs at least one export.", nameof(exports));
    }

    /// <summary>The exports served.</summary>
    public IReadOnlyList<NbdExport> Exports => _exports;
    /// <summary>The most connections at once (in the handshake or transmission); more are closed at once.</summary>
    public int MaxConnections { get; init; } = 64;
    /// <summary>Connections open now.</summary>
    public int ConnectionCount => _connections.Count;
    /// <summary>Clients in the transmission phase now, over all exports.</summary>
    public int ClientCount => _exports.Sum(e => e.ClientCount);
    /// <summary>Called (from a worker thread) when a connection fails with something other than a disconnect: for logging.</summary>
    public Action<Exception>? ConnectionError { get; init; }

    /// <summary>Listens on TCP; port 0 picks a free port. Returns the bound end point.</summary>
    public IPEndPoint ListenTcp(IPAddress? address = null, int port = DefaultPort)
    {
        var endPoint = new IPEndPoint(address ?? IPAddress.Loopback, port);
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(endPoint); // .NET sets SO_REUSEADDR on Unix, as servers do: a port in use still fails here
            socket.Listen(64);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        Start(socket);
        return (IPEndPoint)socket.LocalEndPoint!;
    }

    /// <summary>Listens on a Unix socket at <paramref name="path"/>; a stale socket file there is replaced, any other file is an error.</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            if ((File.GetAttributes(path) & FileAttributes.Directory) != 0 || !IsStaleSocket(path))
                throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path} already exists (and is not a stale socket).");
            File.Delete(path);
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(64);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        lock (_gate) _socketFiles.Add(path);
        Start(socket);
    }

    // A socket file nobody listens on (left by a killed server) may be replaced.
    private static bool IsStaleSocket(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return false;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.ConnectionRefused;
        }
    }

    private void Start(Socket listener)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _listeners.Add(listener);
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested) return;
                continue;
            }
            if (_connections.Count >= MaxConnections)
            {
                client.Dispose();
                continue;
            }
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var task = Task.Run(async () =>
            {
                await started.Task.ConfigureAwait(false);
                await ServeAsync(client).ConfigureAwait(false);
            });
            _connections[client] = task;
            started.SetResult();
        }
    }

    private async Task ServeAsync(Socket client)
    {
        NbdExport? export = null;
        try
        {
            using var stream = new NetworkStream(client, ownsSocket: false);
            var handshake = new NbdHandshake(stream, _exports, name => _byName.GetValueOrDefault(name));
            using (var limit = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                limit.CancelAfter(HandshakeLimit); // a client that never finishes the handshake does not hold a slot forever
                export = await handshake.RunAsync(limit.Token).ConfigureAwait(false);
            }
            if (export == null) return;
            var transmission = new NbdTransmission(stream, export, handshake.StructuredReplies, handshake.BaseAllocation);
            await transmission.RunAsync(_stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // the client went away, sent something that ends the connection, or the server is stopping
        }
        catch (Exception e)
        {
            ConnectionError?.Invoke(e);
        }
        finally
        {
            export?.Detach();
            try { client.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            client.Dispose();
            _connections.TryRemove(client, out _);
        }
    }

    /// <summary>Stops listening, closes every connection (waiting for requests in flight) and closes the exported images.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _stop.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        var tasks = _acceptLoops.Concat(_connections.Values).ToArray();
        foreach (var socket in _connections.Keys)
        {
            try { socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }
        try { Task.WaitAll(tasks, ShutdownLimit); } catch (AggregateException) { }
        foreach (string path in _socketFiles)
        {
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        List<Exception>? failures = null;
        foreach (var export in _exports)
        {
            try { export.Disk.Dispose(); }
            catch (Exception e) when (e is IOException or VDiskException) { (failures ??= new()).Add(e); }
        }
        _stop.Dispose();
        if (failures != null) throw new AggregateException("Closing the exported images failed.", failures);
    }
}
